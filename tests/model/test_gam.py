"""GAM (Eq. 5–8): attention against a hand reference, pyramid shapes, padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from amnet.model.gam import (
    GAM,
    DropPath,
    GroupCrossAttention,
    SelfAttentionBlock,
    local_attention,
    masked_attention,
)


def _reference_attention(q, k, v, key_mask, heads):
    d = q.shape[-1]
    dh = d // heads
    out = torch.zeros_like(q)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(dh)
        s = s.masked_fill(~key_mask[:, None, :], float("-inf"))
        out[..., sl] = torch.softmax(s, dim=-1) @ v[..., sl]
    return out


def test_masked_attention_matches_softmax_reference() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 8)
    key_mask = torch.ones(2, 7, dtype=torch.bool)
    key_mask[1, 4:] = False
    got = masked_attention(q, k, v, key_mask, heads=2)
    torch.testing.assert_close(got, _reference_attention(q, k, v, key_mask, 2), atol=1e-5,
                               rtol=1e-5)


def test_cross_attention_uses_shared_projections_both_ways() -> None:
    """Eq. 8 by hand: Q_L attends (K_S, V_S) and Q_S attends (K_L, V_L), one W_cq/W_ck/W_cv."""
    torch.manual_seed(0)
    blk = GroupCrossAttention(8, 2, mlp_ratio=2.0, dropout=0.0).eval()
    gs, gl = torch.randn(1, 9, 8), torch.randn(1, 4, 8)
    ms, ml = torch.ones(1, 9, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool)
    ms[0, 7:] = False
    gs = gs * ms[..., None]
    new_s, new_l = blk(gs, ms, gl, ml)
    w = blk.qkv
    qs, ks, vs = w(blk.norm1(gs)).chunk(3, -1)
    ql, kl, vl = w(blk.norm1(gl)).chunk(3, -1)
    ref_l = gl + blk.proj(_reference_attention(ql, ks, vs, ms, 2))
    ref_s = gs + blk.proj(_reference_attention(qs, kl, vl, ml, 2))
    ref_l = ref_l + blk.mlp(blk.norm2(ref_l))
    ref_s = (ref_s + blk.mlp(blk.norm2(ref_s))) * ms[..., None]
    torch.testing.assert_close(new_l, ref_l, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_s, ref_s, atol=1e-5, rtol=1e-5)
    assert (new_s[0, 7:] == 0).all()


def _gam(**kw) -> GAM:
    args = dict(heads=2, depth=2, mlp_ratio=2.0, dropout=0.0, self_attention=True, group=True)
    args.update(kw)
    return GAM(6, 8, 4, **args).eval()


@pytest.mark.parametrize("kw", [{}, {"group": False}, {"self_attention": False, "group": False},
                                {"short_levels": 1}, {"window": 3}, {"window": 5, "group": False},
                                {"position": "sinusoidal"}, {"window": 3, "short_levels": 1},
                                {"attention_conv": 3}, {"attention_conv": 3, "window": 5}])
def test_gam_levels_shapes_and_padding_invariance(kw: dict) -> None:
    torch.manual_seed(0)
    gam = _gam(**kw)
    t, total = 45, 64                       # odd real length inside a padded batch
    x = torch.randn(1, 6, t)
    alone_f, _ = gam(x, torch.ones(1, t, dtype=torch.bool))
    assert [f.shape[-1] for f in alone_f] == [45, 23, 12, 6]
    xb = torch.zeros(2, 6, total)
    xb[0, :, :t] = x[0]
    xb[1] = torch.randn(6, total)
    mb = torch.zeros(2, total, dtype=torch.bool)
    mb[0, :t] = True
    mb[1] = True
    feats, masks = gam(xb, mb)
    assert [f.shape for f in feats] == [(2, 8, 64), (2, 8, 32), (2, 8, 16), (2, 8, 8)]
    for lvl, (fa, fb, mk) in enumerate(zip(alone_f, feats, masks, strict=True)):
        n = fa.shape[-1]
        assert int(mk[0].sum()) == n, lvl
        torch.testing.assert_close(fb[0, :, :n], fa[0], atol=2e-5, rtol=1e-4)
        assert (fb[0, :, n:] == 0).all()


def test_group_attention_mixes_levels_and_needs_self_attention() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 6, 32)
    m = torch.ones(1, 32, dtype=torch.bool)
    grouped, plain = _gam(), _gam(group=False)
    plain.load_state_dict(grouped.state_dict(), strict=False)
    a, b = grouped(x, m)[0], plain(x, m)[0]
    assert not torch.allclose(a[-1], b[-1])        # the long-span level saw the short group
    with pytest.raises(ValueError, match="self_attention"):
        _gam(self_attention=False, group=True)


def _windowed_reference(q, q_level, keys, heads, window):
    """Brute force: each query attends, under one softmax, every valid key within window // 2
    steps of its aligned position ``j·2^(a−b)`` on each key level."""
    b, tq, d = q.shape
    dh, r = d // heads, window // 2
    out = torch.zeros_like(q)
    for bb in range(b):
        for j in range(tq):
            ks, vs = [], []
            for k, v, km, lvl in keys:
                x = j * 2.0 ** (q_level - lvl)
                for i in range(k.shape[1]):
                    if abs(i - x) <= r and km[bb, i]:
                        ks.append(k[bb, i])
                        vs.append(v[bb, i])
            if not ks:
                continue
            kk, vv = torch.stack(ks), torch.stack(vs)
            for h in range(heads):
                sl = slice(h * dh, (h + 1) * dh)
                a = torch.softmax(q[bb, j, sl] @ kk[:, sl].T / math.sqrt(dh), -1)
                out[bb, j, sl] = a @ vv[:, sl]
    return out


def _kv(t: int, valid: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    m = torch.ones(2, t, dtype=torch.bool)
    m[1, valid:] = False
    return torch.randn(2, t, 8, generator=g), torch.randn(2, t, 8, generator=g), m


@pytest.mark.parametrize(("q_level", "key_levels", "window", "block"),
                         [(0, [0], 5, 32), (0, [0], 3, 4),     # self-attention, several blocks
                          (1, [2, 3], 3, 4),                   # fine queries, coarse keys
                          (3, [1, 2], 5, 32)])                 # coarse queries, fine keys
def test_local_attention_matches_brute_force_window(q_level, key_levels, window, block) -> None:
    g = torch.Generator().manual_seed(0)
    base = 45
    lengths = {lvl: -(-base // 2 ** lvl) for lvl in range(4)}
    keys = []
    for lvl in key_levels:
        k, v, m = _kv(lengths[lvl], lengths[lvl] * 2 // 3, g)
        keys.append((k, v, m, lvl))
    tq = lengths[q_level]
    q = torch.randn(2, tq, 8, generator=g)
    qm = torch.ones(2, tq, dtype=torch.bool)
    qm[1, tq * 2 // 3:] = False
    got = local_attention(q, q_level, keys, heads=2, window=window, block=block)
    ref = _windowed_reference(q, q_level, keys, 2, window)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[qm], ref[qm], atol=1e-5, rtol=1e-5)


def test_local_attention_with_a_window_covering_everything_is_global() -> None:
    g = torch.Generator().manual_seed(1)
    k, v, m = _kv(37, 25, g)
    q = torch.randn(2, 37, 8, generator=g)
    glob = masked_attention(q, k, v, m, heads=2)
    loc = local_attention(q, 0, [(k, v, m, 0)], heads=2, window=2 * 37 + 1, block=8)
    torch.testing.assert_close(loc[:, :25], glob[:, :25], atol=1e-5, rtol=1e-5)


def test_attention_conv_gives_order_inside_the_window() -> None:
    """Without the conv, local attention is blind to the order of its window (swap two
    neighbours of a step: its output stays); with ActionFormer's depthwise conv it is not."""
    torch.manual_seed(0)
    x = torch.randn(1, 40, 8)
    m = torch.ones(1, 40, dtype=torch.bool)
    swapped = x.clone()
    swapped[0, [19, 21]] = x[0, [21, 19]]
    plain = SelfAttentionBlock(8, 2, 2.0, 0.0, window=5).eval()
    conv = SelfAttentionBlock(8, 2, 2.0, 0.0, window=5, conv=3).eval()
    torch.testing.assert_close(plain(swapped, m)[0, 20], plain(x, m)[0, 20])
    assert not torch.allclose(conv(swapped, m)[0, 20], conv(x, m)[0, 20])
    with pytest.raises(ValueError, match="conv kernel"):
        SelfAttentionBlock(8, 2, 2.0, 0.0, conv=2)


def test_windowed_self_attention_block_is_local_global_is_not() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 40, 8)
    m = torch.ones(1, 40, dtype=torch.bool)
    far = x.clone()
    far[0, 30] = torch.randn(8) * 3                    # (not a constant: LayerNorm removes it)
    for window, changes in ((5, False), (0, True)):
        blk = SelfAttentionBlock(8, 2, 2.0, 0.0, window=window).eval()
        a, b = blk(x, m), blk(far, m)
        assert torch.allclose(a[0, 27], b[0, 27]) is not changes      # 3 > 5 // 2 away
        assert not torch.allclose(a[0, 29], b[0, 29])                 # inside the window


def test_windowed_cross_attention_equals_global_with_a_covering_window() -> None:
    """The windowed Eq. 8 is the global one when the window spans every level."""
    torch.manual_seed(0)
    glob = GroupCrossAttention(8, 2, 2.0, 0.0).eval()
    loc = GroupCrossAttention(8, 2, 2.0, 0.0, window=129).eval()
    loc.load_state_dict(glob.state_dict())
    ls, ll = [(0, 32), (1, 16)], [(2, 8), (3, 4)]
    gs, gl = torch.randn(1, 48, 8), torch.randn(1, 12, 8)
    ms, ml = torch.ones(1, 48, dtype=torch.bool), torch.ones(1, 12, dtype=torch.bool)
    a_s, a_l = glob(gs, ms, gl, ml)
    b_s, b_l = loc(gs, ms, gl, ml, ls, ll)
    torch.testing.assert_close(a_s, b_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_l, b_l, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="layout"):
        loc(gs, ms, gl, ml)
    with pytest.raises(ValueError, match="odd"):
        _gam(window=4)


def test_sinusoidal_position_changes_attention_output_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 6, 32)
    m = torch.ones(1, 32, dtype=torch.bool)
    plain, pos = _gam(), _gam(position="sinusoidal")
    pos.load_state_dict(plain.state_dict())          # no new parameters
    assert not torch.allclose(plain(x, m)[0][0], pos(x, m)[0][0])
    flat = _gam(self_attention=False, group=False, position="sinusoidal")
    ref = _gam(self_attention=False, group=False)
    ref.load_state_dict(flat.state_dict())
    torch.testing.assert_close(flat(x, m)[0][0], ref(x, m)[0][0])   # no attention: unused


def test_drop_path_drops_whole_videos_in_training_only() -> None:
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    x = torch.ones(64, 3, 5)
    y = dp(x)
    per_video = y.flatten(1)
    assert set(per_video[:, 0].tolist()) == {0.0, 2.0}               # dropped or scaled 1/(1-p)
    assert (per_video == per_video[:, :1]).all()                     # one draw per video
    assert torch.equal(dp.eval()(x), x) and torch.equal(DropPath(0.0).train()(x), x)
    torch.manual_seed(0)
    gam = _gam(drop_path=0.5).train()
    xin, m = torch.randn(1, 6, 32), torch.ones(1, 32, dtype=torch.bool)
    outs = {tuple(gam(xin, m)[0][0].flatten()[:4].tolist()) for _ in range(6)}
    assert len(outs) > 1                                             # stochastic in training
    ref = _gam().eval()
    ref.load_state_dict(gam.state_dict())
    torch.testing.assert_close(gam.eval()(xin, m)[0][0], ref(xin, m)[0][0])
