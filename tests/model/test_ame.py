"""AME (Eq. 1, 4), the masked conv block and step packing: shapes, masks, padding invariance."""

from __future__ import annotations

import torch

from amnet.model.ame import AME, ConvNormAct, pack_pos_neg, pack_steps


def _pad_batch(x: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put the (1, C, T) video in a batch of 2 with a random longer neighbour, zero-padded."""
    c, t = x.shape[1], x.shape[2]
    out = torch.zeros(2, c, total)
    out[0, :, :t] = x[0]
    out[1] = torch.randn(c, total)
    mask = torch.zeros(2, total, dtype=torch.bool)
    mask[0, :t] = True
    mask[1] = True
    return out, mask


def test_conv_block_odd_length_stride_and_zero_padding() -> None:
    torch.manual_seed(0)
    block = ConvNormAct(5, 7, kernel=3, stride=2)
    x = torch.randn(2, 5, 37)
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 20:] = False
    x = x * mask[:, None]
    y, m = block(x, mask)
    assert y.shape == (2, 7, 19) and m.shape == (2, 19)
    assert torch.equal(m[1], torch.arange(19) * 2 < 20)   # step j sits on input 2j
    assert (y[1][:, ~m[1]] == 0).all()


def test_ame_shape_refine_and_padding_invariance() -> None:
    torch.manual_seed(0)
    ame = AME(6, 8, layers=2).eval()
    x = torch.randn(1, 6, 23)
    alone = ame(x, torch.ones(1, 23, dtype=torch.bool))
    assert alone.shape == (1, 6, 23)
    xb, mb = _pad_batch(x, 40)
    batched = ame(xb, mb)
    torch.testing.assert_close(batched[0, :, :23], alone[0], atol=1e-5, rtol=1e-5)
    assert (batched[0, :, 23:] == 0).all()
    torch.testing.assert_close(ame.refine(x, torch.ones(1, 23, dtype=torch.bool)), x + alone)


def test_pack_steps_keeps_time_order_and_masks() -> None:
    x = torch.arange(2 * 2 * 6, dtype=torch.float32).view(2, 2, 6)
    sel = torch.tensor([[False, True, False, True, True, False],
                        [False, False, False, False, False, False]])
    packed, m = pack_steps(x, sel)
    assert packed.shape == (2, 2, 3)
    assert torch.equal(packed[0], x[0][:, [1, 3, 4]])
    assert torch.equal(m, torch.tensor([[True, True, True], [False, False, False]]))
    assert (packed[1] == 0).all()


def test_pack_pos_neg_layout_and_gap_isolation() -> None:
    """[pos | gap | neg | pad] in time order; the gap keeps the two parts' convs apart."""
    x = torch.arange(1, 9, dtype=torch.float32).view(1, 1, 8)
    pos = torch.tensor([[0, 1, 1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    neg = torch.tensor([[1, 0, 0, 1, 0, 0, 1, 0]], dtype=torch.bool)
    packed, mp, mn = pack_pos_neg(x, pos, neg, gap=1)
    assert packed.shape == (1, 1, 9)
    assert packed[0, 0].tolist() == [2, 3, 6, 0, 1, 4, 7, 0, 0]
    assert mp[0].tolist() == [True] * 3 + [False] * 6
    assert mn[0].tolist() == [False] * 4 + [True] * 3 + [False] * 2
    torch.manual_seed(0)
    ame = AME(1, 4, 2)
    both = ame(packed, mp | mn)
    f_pos, m_pos = pack_steps(x, pos)
    f_neg, m_neg = pack_steps(x, neg)
    torch.testing.assert_close(both[..., :3], ame(f_pos, m_pos))
    torch.testing.assert_close(both[..., 4:7], ame(f_neg, m_neg))
    no_gap, mp0, mn0 = pack_pos_neg(x, pos, neg, gap=0)
    assert not torch.allclose(ame(no_gap, mp0 | mn0)[..., 3:6], ame(f_neg, m_neg))
