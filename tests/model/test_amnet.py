"""The assembled AMNet: both phases, every ablation switch, odd lengths and batch padding."""

from __future__ import annotations

import pytest
import torch

from amnet.config import load_config
from amnet.errors import ConfigError
from amnet.losses import triplet_loss
from amnet.model import AMNet, ModelOutput
from amnet.model.ame import pack_steps

SMALL = ["model.embed_dim=16", "model.n_heads=2", "model.fpn_levels=4", "model.gam_depth=1",
         "model.head_layers=1", "model.ame_layers=2", "data.max_seq_len=64",
         "model.regression_ranges=[[0,4],[4,8],[8,16],[16,10000]]"]
SWITCHES = {
    "full": [],
    "window": ["model.attention_window=3", "model.position=sinusoidal"],
    "attention_conv": ["model.attention_window=3", "model.attention_conv=3"],
    "no_gam": ["model.gam=false"],
    "baseline": ["model.ame=false", "model.gam=false", "model.self_attention=false",
                 "model.matching_head=false"],
    "ame_ms": ["model.gam=false", "model.self_attention=false"],
}


def _model(*extra: str) -> AMNet:
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, *extra])
    return AMNet(cfg.model, 6, 5).eval()


def _per_level(out: ModelOutput, field: torch.Tensor, b: int) -> list[torch.Tensor]:
    return list(field[b].split(out.level_lengths, dim=0))


@pytest.mark.parametrize("name", list(SWITCHES))
def test_detect_shapes_and_padding_invariance(name: str) -> None:
    model = _model(*SWITCHES[name])
    t = 29                                         # odd; padded inside to 32
    x = torch.randn(1, 6, t)
    alone = model(x, torch.ones(1, t, dtype=torch.bool))
    assert alone.level_lengths == [32, 16, 8, 4]
    n = sum(alone.level_lengths)
    assert alone.cls_logits.shape == (1, n, 5) and alone.offsets.shape == (1, n, 2)
    assert alone.mask.shape == (1, n) and alone.points.shape == alone.strides.shape == (n,)
    assert int(alone.mask.sum()) == 29 + 15 + 8 + 4
    assert (alone.offsets >= 0).all()
    assert (alone.match_logits is None) == (name in ("baseline",))
    # Same video next to a longer one: its valid outputs do not move.
    xb = torch.zeros(2, 6, 50)
    xb[0, :, :t] = x[0]
    xb[1] = torch.randn(6, 50)
    mb = torch.zeros(2, 50, dtype=torch.bool)
    mb[0, :t] = True
    mb[1] = True
    batched = model(xb, mb)
    assert batched.level_lengths == [56, 28, 14, 7]
    fields = [("cls_logits", 1e-4), ("offsets", 1e-4)]
    if alone.match_logits is not None:
        fields.append(("match_logits", 1e-4))
    for fname, tol in fields:
        for lvl, (a, b, ma) in enumerate(zip(_per_level(alone, getattr(alone, fname), 0),
                                             _per_level(batched, getattr(batched, fname), 0),
                                             _per_level(alone, alone.mask, 0), strict=True)):
            k = int(ma.sum())
            torch.testing.assert_close(b[:k], a[:k], atol=tol, rtol=tol, msg=f"{fname} {lvl}")


def test_mask_phase_returns_triplet_loss_touching_only_ame() -> None:
    model = _model().train()
    x = torch.randn(2, 6, 21)
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 15:] = False
    pos = torch.zeros(2, 21, dtype=torch.bool)
    pos[0, 3:8] = True
    pos[1, 10:20] = True                           # partly on padding: ignored
    loss = model(x, mask, phase="mask", pos_mask=pos)
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    ame = {id(p) for p in model.ame_parameters()}
    for p in model.parameters():
        assert (p.grad is not None) == (id(p) in ame)
    with pytest.raises(ValueError, match="pos_mask"):
        model(x, mask, phase="mask")
    with pytest.raises(ValueError, match="AME"):
        _model("model.ame=false")(x, mask, phase="mask", pos_mask=pos)


def _unpacked_mask_loss(model: AMNet, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor
                        ) -> torch.Tensor:
    """Reference for Eq. 1–3: three separate AME passes on F, F_pos and F_neg."""
    x = x * mask[:, None]
    pos = pos & mask
    f_pos, m_pos = pack_steps(x, pos)
    f_neg, m_neg = pack_steps(x, mask & ~pos)
    return triplet_loss(model.ame(x, mask), pos, model.ame(f_pos, m_pos), m_pos,
                        model.ame(f_neg, m_neg), m_neg, model.triplet_margin)


@pytest.mark.parametrize("ame_layers", [1, 3])
def test_packed_mask_phase_equals_three_separate_ame_passes(ame_layers: int) -> None:
    """The packed ``[pos | gap | neg]`` batch gives the unpacked loss and AME gradients."""
    model = _model(f"model.ame_layers={ame_layers}").train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, 32, generator=g)
    mask = torch.ones(4, 32, dtype=torch.bool)
    mask[1, 20:] = False
    mask[3, 9:] = False
    pos = torch.rand(4, 32, generator=g) > 0.6
    pos[2] = False                                   # no action: left out of the mean
    pos[3, :9] = True                                # only actions: no background
    pos[0, 0] = pos[0, 31] = True                    # actions touching both ends
    got = model(x, mask, phase="mask", pos_mask=pos)
    got_grads = torch.autograd.grad(got, model.ame_parameters())
    ref = _unpacked_mask_loss(model, x, mask, pos)
    ref_grads = torch.autograd.grad(ref, model.ame_parameters())
    assert ref.item() > 0
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    for a, b in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_ame_init_scale_scales_the_output_layer_and_zero_is_identity() -> None:
    ref, small, zero = (_model(f"model.ame_init_scale={s}") for s in (1.0, 0.1, 0.0))
    torch.testing.assert_close(small.ame.out.weight, 0.1 * ref.ame.out.weight)
    torch.testing.assert_close(small.ame.out.bias, 0.1 * ref.ame.out.bias)
    for name, p in ref.ame.blocks.named_parameters():          # the rest is untouched
        assert torch.equal(p, dict(small.ame.blocks.named_parameters())[name])
    x, m = torch.randn(2, 6, 16), torch.ones(2, 16, dtype=torch.bool)
    assert torch.equal(zero.ame.refine(x, m), x)                # Eq. 4 starts at F + 0
    assert not torch.allclose(ref.ame.refine(x, m), x)


def test_triplet_anchors_both_adds_background_anchors() -> None:
    x = torch.randn(2, 6, 24, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 24, dtype=torch.bool)
    pos = torch.zeros(2, 24, dtype=torch.bool)
    pos[:, 5:12] = True
    action = _model().train()
    both = _model()
    both.triplet_anchors = "both"
    both.train()
    a = action(x, mask, phase="mask", pos_mask=pos)
    b = both(x, mask, phase="mask", pos_mask=pos)
    assert not torch.allclose(a, b)
    # by hand: the mean of the action-anchor loss and the same loss with the roles swapped
    f = both.ame(x, mask)
    (fp, mp), (fn, mn) = pack_steps(x, pos), pack_steps(x, ~pos)
    bg = triplet_loss(f, ~pos, both.ame(fn, mn), mn, both.ame(fp, mp), mp, both.triplet_margin)
    torch.testing.assert_close(b, 0.5 * (a + bg), atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="triplet_anchors"):
        AMNet(load_config(None, SMALL).model, 6, 5, triplet_anchors="background")


def test_invalid_inputs_and_switch_combinations() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"\(B, 6, T\)"):
        model(torch.randn(1, 5, 8), torch.ones(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="phase"):
        model(torch.randn(1, 6, 8), torch.ones(1, 8, dtype=torch.bool), phase="train")
    with pytest.raises(ConfigError, match="self_attention"):
        _model("model.gam=true", "model.self_attention=false")
    for bad in (1, 4):
        with pytest.raises(ConfigError, match="attention_window"):
            _model(f"model.attention_window={bad}")
        with pytest.raises(ConfigError, match="attention_conv"):
            _model(f"model.attention_conv={bad}")
