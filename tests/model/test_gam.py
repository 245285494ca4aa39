"""GAM (Eq. 5–8): attention against a hand reference, pyramid shapes, padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from amnet.model.gam import GAM, GroupCrossAttention, masked_attention


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
                                {"short_levels": 1}])
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
