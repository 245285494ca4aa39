"""Losses against hand-computed values (Eq. 2–3, 11–12)."""

from __future__ import annotations

import math

import pytest
import torch

from amnet.losses import (
    DetectionLosses,
    detection_losses,
    matching_loss,
    segment_tiou,
    sigmoid_focal_loss,
    triplet_loss,
)
from amnet.model.assign import Targets
from amnet.model.output import ModelOutput


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0])
    targets = torch.tensor([1.0, 0.0, 0.5])
    got = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    p2 = 1 / (1 + math.exp(-2.0))
    p3 = 1 / (1 + math.exp(1.0))
    ce3 = -(0.5 * math.log(p3) + 0.5 * math.log(1 - p3))
    pt3 = p3 * 0.5 + (1 - p3) * 0.5
    want = [0.25 * 0.5 ** 2 * math.log(2.0),                  # p = .5, y = 1
            0.75 * p2 ** 2 * -math.log(1 - p2),               # y = 0: (1 - p_t) = p
            (0.25 * 0.5 + 0.75 * 0.5) * (1 - pt3) ** 2 * ce3]  # soft target
    torch.testing.assert_close(got, torch.tensor(want))
    no_alpha = sigmoid_focal_loss(logits[:1], targets[:1], alpha=-1, gamma=0.0)
    torch.testing.assert_close(no_alpha, torch.tensor([math.log(2.0)]))


def test_segment_tiou_by_hand() -> None:
    pred = torch.tensor([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    gt = torch.tensor([[2.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
    # inter = min(1,2) + min(3,2) = 3; union = 4 + 4 - 3 = 5
    torch.testing.assert_close(segment_tiou(pred, gt), torch.tensor([0.6, 0.0, 1.0]))


def test_matching_losses_by_hand() -> None:
    m = torch.tensor([math.atanh(0.5), 0.0])
    iou = torch.tensor([0.6, 0.6])
    torch.testing.assert_close(matching_loss(m, iou, "l2"), torch.tensor([0.01, 0.36]))
    torch.testing.assert_close(matching_loss(m, iou, "l1"), torch.tensor([0.1, 0.6]))
    bce = matching_loss(m[1:], iou[1:], "bce")            # sigmoid(0) = .5
    torch.testing.assert_close(bce, torch.tensor([math.log(2.0)]))
    with pytest.raises(ValueError, match="matching"):
        matching_loss(m, iou, "l3")  # type: ignore[arg-type]


def test_matching_target_is_detached() -> None:
    pred = torch.tensor([[1.0, 3.0]], requires_grad=True)
    m = torch.tensor([0.3], requires_grad=True)
    matching_loss(m, segment_tiou(pred, torch.tensor([[2.0, 2.0]])), "l2").sum().backward()
    assert pred.grad is None and m.grad is not None


def test_triplet_loss_by_hand() -> None:
    """Video 0: anchors (1,0) at t=0 and (0,1) at t=1 (both action steps), action prototype
    (1,0), background prototype (0,1): t=0 → [0 − 2 + 1]+ = 0, t=1 → [2 − 0 + 1]+ = 3 → 1.5.
    Video 1 has no background step: left out."""
    f_mask = torch.zeros(2, 2, 4)
    f_mask[0, :, 0] = torch.tensor([3.0, 0.0])          # normalised → (1, 0)
    f_mask[0, :, 1] = torch.tensor([0.0, 0.5])          # normalised → (0, 1)
    f_mask[0, :, 2:] = 7.0                              # background steps are not anchors
    f_mask[1] = 1.0
    pos = torch.tensor([[True, True, False, False], [True, True, True, True]])
    f_pos = torch.zeros(2, 2, 2)
    f_pos[0, 0] = 2.0                                   # mean (2, 0) → (1, 0)
    f_pos[1, 1] = 1.0
    f_neg = torch.zeros(2, 2, 2)
    f_neg[0, 1, 0] = 4.0                                # masked mean (0, 4) → (0, 1)
    f_neg[0, 1, 1] = 99.0                               # padding: ignored
    m_pos = torch.tensor([[True, True], [True, True]])
    m_neg = torch.tensor([[True, False], [False, False]])
    got = triplet_loss(f_mask, pos, f_pos, m_pos, f_neg, m_neg, margin=1.0)
    torch.testing.assert_close(got, torch.tensor(1.5))
    got = triplet_loss(f_mask, pos, f_pos, m_pos, f_neg, m_neg, margin=0.5)
    torch.testing.assert_close(got, torch.tensor(1.25))  # (0 + 2.5) / 2


def test_triplet_loss_with_background_anchors_by_hand() -> None:
    """``triplet_anchors=both`` on the case above: video 0's background steps (7, 7) →
    (1, 1)/√2 are equally far (2 − √2) from both prototypes, so each swapped term is
    [d_neg − d_pos + α]+ = α; the video's loss is the mean of the action (1.5) and background
    (α = 1) means."""
    f_mask = torch.zeros(2, 2, 4)
    f_mask[0, :, 0] = torch.tensor([3.0, 0.0])
    f_mask[0, :, 1] = torch.tensor([0.0, 0.5])
    f_mask[0, :, 2:] = 7.0
    f_mask[1] = 1.0
    pos = torch.tensor([[True, True, False, False], [True, True, True, True]])
    neg_anchor = torch.tensor([[False, False, True, True], [False] * 4])
    f_pos = torch.zeros(2, 2, 2)
    f_pos[0, 0] = 2.0
    f_pos[1, 1] = 1.0
    f_neg = torch.zeros(2, 2, 2)
    f_neg[0, 1, 0] = 4.0
    m_pos = torch.tensor([[True, True], [True, True]])
    m_neg = torch.tensor([[True, False], [False, False]])
    got = triplet_loss(f_mask, pos, f_pos, m_pos, f_neg, m_neg, 1.0, neg_anchor)
    torch.testing.assert_close(got, torch.tensor(0.5 * (1.5 + 1.0)))
    got = triplet_loss(f_mask, pos, f_pos, m_pos, f_neg, m_neg, 0.5, neg_anchor)
    torch.testing.assert_close(got, torch.tensor(0.5 * (1.25 + 0.5)))
    # a background anchor on the action prototype is penalised by 2 + α
    f_mask[0, :, 2:] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    got = triplet_loss(f_mask, pos, f_pos, m_pos, f_neg, m_neg, 1.0, neg_anchor)
    torch.testing.assert_close(got, torch.tensor(0.5 * (1.5 + 3.0)))


def test_triplet_loss_without_any_triplet_is_zero_with_graph() -> None:
    f_mask = torch.randn(1, 3, 5, requires_grad=True)
    pos = torch.zeros(1, 5, dtype=torch.bool)
    got = triplet_loss(f_mask, pos, torch.zeros(1, 3, 1), pos[:, :1], f_mask, pos | True)
    assert got.item() == 0.0 and got.requires_grad
    got.backward()
    assert torch.equal(f_mask.grad, torch.zeros_like(f_mask))


def test_detection_losses_normalised_and_total() -> None:
    n = 3
    out = ModelOutput(
        cls_logits=torch.zeros(1, n, 2), offsets=torch.tensor([[[1.0, 3.0], [1.0, 1.0],
                                                                 [5.0, 5.0]]]),
        match_logits=torch.tensor([[math.atanh(0.5), 0.0, 0.0]]),
        points=torch.arange(3.0), strides=torch.ones(3), level_ids=torch.zeros(3, dtype=torch.long),
        mask=torch.tensor([[True, True, False]]), level_lengths=[3])
    tg = Targets(cls=torch.tensor([[[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]]),
                 dist=torch.tensor([[[2.0, 2.0], [0.0, 0.0], [5.0, 5.0]]]),
                 pos=torch.tensor([[True, False, True]]))      # point 2 is padding
    det = detection_losses(out, tg, normalizer=2.0, matching="l2")
    focal_pos = 0.25 * 0.25 * math.log(2.0)
    focal_neg = 0.75 * 0.25 * math.log(2.0)
    torch.testing.assert_close(det.cls, torch.tensor((focal_pos + 3 * focal_neg) / 2.0))
    torch.testing.assert_close(det.reg, torch.tensor(0.4 / 2.0))  # only point 0 counts
    torch.testing.assert_close(det.mat, torch.tensor(0.01 / 2.0))
    assert det.num_pos == 1
    no_pos = Targets(cls=torch.zeros(1, n, 2), dist=torch.zeros(1, n, 2),
                     pos=torch.zeros(1, n, dtype=torch.bool))
    out.offsets.requires_grad_(True)
    empty = detection_losses(out, no_pos, normalizer=1.0)
    assert isinstance(empty, DetectionLosses) and empty.reg.item() == 0.0
    assert empty.reg.requires_grad
