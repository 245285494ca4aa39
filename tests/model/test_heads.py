"""Prediction heads (Eq. 9–10): shapes, prior initialisation, per-level ω_B, matching switch."""

from __future__ import annotations

import torch

from amnet.model.heads import Heads


def test_heads_shapes_prior_and_scales() -> None:
    torch.manual_seed(0)
    heads = Heads(8, 5, levels=3, layers=2, kernel=3, prior_prob=0.01, matching=True)
    x = torch.randn(2, 8, 11)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 6:] = False
    x = x * mask[:, None]
    cls, dist, match = heads(x, mask, level=1)
    assert cls.shape == (2, 11, 5) and dist.shape == (2, 11, 2) and match.shape == (2, 11)
    assert (dist >= 0).all()
    # bias = -log((1-p)/p): every class starts at the prior probability
    b = heads.cls_fc.bias
    torch.testing.assert_close(torch.sigmoid(b), torch.full_like(b, 0.01))
    # ω_B of level 1 scales level 1 only; ω_M scales the matching logit
    with torch.no_grad():
        heads.omega_b[1] = 2.0
        heads.omega_m.fill_(3.0)
    _, dist2, match2 = heads(x, mask, level=1)
    _, dist0, _ = heads(x, mask, level=0)
    torch.testing.assert_close(dist2, 2 * dist)
    torch.testing.assert_close(dist0, dist)
    torch.testing.assert_close(match2, 3 * match)


def test_padding_does_not_change_valid_outputs_and_matching_off() -> None:
    torch.manual_seed(0)
    heads = Heads(8, 4, levels=2, layers=2, kernel=3, prior_prob=0.05, matching=False)
    x = torch.randn(1, 8, 7)
    alone = heads(x, torch.ones(1, 7, dtype=torch.bool), 0)
    xb = torch.cat([x, torch.randn(1, 8, 5)], dim=2)
    mb = torch.zeros(1, 12, dtype=torch.bool)
    mb[0, :7] = True
    xb[:, :, 7:] = 0
    batched = heads(xb, mb, 0)
    torch.testing.assert_close(batched[0][:, :7], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1][:, :7], alone[1], atol=1e-5, rtol=1e-5)
    assert alone[2] is None and batched[2] is None
