"""Boundary voting after Soft-NMS (amnet/inference/voting.py) and its place in postprocess."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amnet.config import InferConfig
from amnet.inference.postprocess import _nms_per_video
from amnet.inference.voting import vote_boundaries


def _loop_reference(kept, kept_labels, cand, scores, labels, thresh, class_aware):
    out = []
    for (s, e), lab in zip(kept, kept_labels, strict=True):
        num, den = np.zeros(2), 0.0
        for (cs, ce), sc, cl in zip(cand, scores, labels, strict=True):
            if class_aware and cl != lab:
                continue
            inter = max(0.0, min(e, ce) - max(s, cs))
            union = (e - s) + (ce - cs) - inter
            t = inter / union if union > 0 else 0.0
            if t >= thresh:
                num += sc * t * np.array([cs, ce])
                den += sc * t
        out.append(num / den if den > 0 else np.array([s, e]))
    return np.array(out).reshape(-1, 2)


def test_by_hand() -> None:
    cand = np.array([[0.0, 10.0], [1.0, 11.0], [0.0, 20.0], [2.0, 12.0]])
    scores = np.array([0.9, 0.5, 0.8, 0.6])
    labels = np.array([0, 0, 0, 1])
    got = vote_boundaries(cand[:1], labels[:1], cand, scores, labels, 0.7)
    t = 9.0 / 11.0  # [1, 11] vs [0, 10]; [0, 20] has tIoU 0.5, [2, 12] is another class
    want = (0.9 * np.array([0.0, 10.0]) + 0.5 * t * np.array([1.0, 11.0])) / (0.9 + 0.5 * t)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    # class-agnostic: [2, 12] (tIoU 8/12 < 0.7) still does not vote, at 0.6 it does
    agn = vote_boundaries(cand[:1], labels[:1], cand, scores, labels, 0.6, class_aware=False)
    t2 = 8.0 / 12.0
    want2 = (0.9 * np.array([0.0, 10.0]) + 0.5 * t * np.array([1.0, 11.0])
             + 0.6 * t2 * np.array([2.0, 12.0])) / (0.9 + 0.5 * t + 0.6 * t2)
    np.testing.assert_allclose(agn[0], want2, rtol=1e-12)


@pytest.mark.parametrize("class_aware", [True, False])
@pytest.mark.parametrize("thresh", [0.3, 0.7, 0.95])
def test_matches_the_loop_reference(class_aware: bool, thresh: float) -> None:
    rng = np.random.default_rng(int(thresh * 100) + class_aware)
    start = rng.random(300) * 100
    cand = np.stack([start, start + 0.5 + rng.random(300) * 20], 1)
    scores, labels = rng.random(300) + 1e-3, rng.integers(0, 4, 300)
    pick = rng.choice(300, 40, replace=False)
    got = vote_boundaries(cand[pick], labels[pick], cand, scores, labels, thresh,
                          class_aware=class_aware)
    want = _loop_reference(cand[pick], labels[pick], cand, scores, labels, thresh, class_aware)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert (got[:, 1] > got[:, 0]).all()


def test_empty_inputs() -> None:
    assert vote_boundaries(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)), np.zeros(0),
                           np.zeros(0), 0.7).shape == (0, 2)


def _candidates(B: int = 3, K: int = 150):
    rng = np.random.default_rng(5)
    segs, scores, labels = [], [], []
    for _ in range(B):  # clusters of near-duplicates, as neighbouring points give
        centre = np.repeat(rng.random(K // 5) * 200, 5) + rng.normal(0, 0.3, K)
        half = np.repeat(1 + rng.random(K // 5) * 10, 5) + rng.normal(0, 0.3, K)
        sc = rng.random(K)
        order = np.argsort(-sc, kind="stable")
        segs.append(np.stack([centre - half, centre + half], 1)[order])
        scores.append(sc[order])
        labels.append(rng.integers(0, 3, K)[order])
    keep = np.ones((B, K), dtype=bool)
    return [torch.from_numpy(np.stack(x)) for x in (segs, scores, labels, keep)]


def test_postprocess_votes_only_boundaries_on_both_branches() -> None:
    args = _candidates()
    plain = _nms_per_video(*args, InferConfig(max_detections=40), batched=False)
    cfg = InferConfig(max_detections=40, voting_thresh=0.7)
    cpu = _nms_per_video(*args, cfg, batched=False)
    acc = _nms_per_video(*args, cfg, batched=True)
    moved = 0
    for (sp, cp, lp), (sa, ca, la), (sb, cb, lb) in zip(plain, cpu, acc, strict=True):
        np.testing.assert_array_equal(cp, ca)       # scores and labels are Soft-NMS's
        np.testing.assert_array_equal(lp, la)
        np.testing.assert_allclose(sa, sb, rtol=1e-12)
        np.testing.assert_allclose(ca, cb, rtol=1e-12)
        np.testing.assert_array_equal(la, lb)
        moved += int((np.abs(sa - sp) > 1e-9).any(axis=1).sum())
    assert moved > 10  # the clusters' members do move the kept boundaries
    # tIoU 1: only the kept candidate itself (or an exact duplicate) votes → no change
    same = _nms_per_video(*args, InferConfig(max_detections=40, voting_thresh=1.0),
                          batched=False)
    for (sp, _, _), (ss, _, _) in zip(plain, same, strict=True):
        np.testing.assert_allclose(ss, sp, rtol=1e-12)
