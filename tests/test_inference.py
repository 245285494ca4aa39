"""Decoding (Eq. 13), confidence (Eq. 14), Soft-NMS against a naive loop, postprocess, JSON."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from amnet.config import InferConfig
from amnet.errors import ConfigError, DataError, PredictionError
from amnet.evaluation.map import evaluate_detections
from amnet.inference import (
    Detections,
    confidence,
    decode_segments,
    load_video_scores,
    postprocess,
    soft_nms,
    to_results_json,
)
from amnet.inference.nms import _soft_nms_batched, _soft_nms_cpu, _soft_nms_reference
from amnet.inference.postprocess import _nms_per_video
from amnet.model.output import ModelOutput

# --------------------------------------------------------------------------- reference

def naive_soft_nms(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, sigma: float,
                   iou_thresh: float, min_score: float, max_detections: int,
                   class_aware: bool) -> list[tuple[int, float]]:
    """Textbook Gaussian Soft-NMS run to the end, then the best ``max_detections`` kept."""
    cur = [float(s) for s in scores]
    alive = [i for i in range(len(cur)) if cur[i] >= min_score]
    kept = []
    while alive:
        m = max(alive, key=lambda i: cur[i])
        kept.append((m, cur[m]))
        alive.remove(m)
        nxt = []
        for i in alive:
            if not class_aware or labels[i] == labels[m]:
                inter = max(0.0, min(segs[i, 1], segs[m, 1]) - max(segs[i, 0], segs[m, 0]))
                union = (segs[i, 1] - segs[i, 0]) + (segs[m, 1] - segs[m, 0]) - inter
                iou = inter / union if union > 0 else 0.0
                if iou >= iou_thresh:
                    cur[i] *= math.exp(-iou * iou / sigma)
            if cur[i] >= min_score:
                nxt.append(i)
        alive = nxt
    kept.sort(key=lambda x: -x[1])
    return kept[:max_detections]


def random_candidates(rng: np.random.Generator, n: int, n_classes: int = 3
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = rng.uniform(0, 30, n)
    half = rng.uniform(0.2, 4, n)
    segs = np.stack([c - half, c + half], 1)
    return segs, rng.random(n), rng.integers(0, n_classes, n)


# --------------------------------------------------------------------------- Eq. 13-14

def test_confidence_modes() -> None:
    y, m = torch.randn(2, 5, 3), torch.randn(2, 5)
    assert torch.allclose(confidence(y, m, "sigmoid"), torch.sigmoid(y))
    assert torch.allclose(confidence(y, m, "sigmoid*sigmoid"),
                          torch.sigmoid(y) * torch.sigmoid(m)[..., None])
    eq14 = confidence(y, m, "sigmoid*tanh")
    assert eq14.shape == (2, 5, 3)
    assert torch.allclose(eq14[1, 2], torch.sigmoid(y[1, 2]) * math.tanh(float(m[1, 2])))
    assert torch.allclose(confidence(y, None, "sigmoid"), torch.sigmoid(y))
    with pytest.raises(ConfigError, match="matching head"):
        confidence(y, None, "sigmoid*tanh")
    with pytest.raises(ConfigError, match=r"infer\.confidence"):
        confidence(y, m, "softmax")


@pytest.mark.parametrize(("fps", "stride", "window"), [(30.0, 4, 16), (25.0, 16, 16),
                                                       (29.97, 8, 32), (10.0, 1, 1)])
def test_decode_segments_to_seconds(fps: float, stride: int, window: int) -> None:
    points = torch.tensor([0.0, 3.0, 10.0, 7.5])
    offsets = torch.tensor([[0.0, 1.0], [2.0, 0.5], [4.0, 4.0], [10.0, 0.0]])
    out = decode_segments(points, offsets, fps=fps, stride=stride, window=window)
    assert out.dtype == torch.float64 and out.shape == (4, 2)
    for i in range(4):
        ts = float(points[i] - offsets[i, 0])  # Eq. 13
        te = float(points[i] + offsets[i, 1])
        assert out[i, 0].item() == pytest.approx((ts * stride + window / 2) / fps, abs=1e-12)
        assert out[i, 1].item() == pytest.approx((te * stride + window / 2) / fps, abs=1e-12)


def test_decode_segments_per_video_tensors() -> None:
    points = torch.arange(4.0).expand(2, 4)
    offsets = torch.ones(2, 4, 2)
    fps = torch.tensor([[30.0], [15.0]])
    out = decode_segments(points, offsets, fps=fps, stride=torch.tensor([[4.0], [8.0]]),
                          window=16)
    assert out.shape == (2, 4, 2)
    assert out[0, 2, 1].item() == pytest.approx((3 * 4 + 8) / 30)
    assert out[1, 2, 0].item() == pytest.approx((1 * 8 + 8) / 15)


# --------------------------------------------------------------------------- Soft-NMS

@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("iou_thresh", [0.0, 0.3])
@pytest.mark.parametrize("class_aware", [True, False])
def test_soft_nms_matches_naive_reference(sigma: float, iou_thresh: float,
                                          class_aware: bool) -> None:
    rng = np.random.default_rng(int(sigma * 10) + int(iou_thresh * 100) + class_aware)
    for n, max_det in ((1, 5), (40, 1000), (60, 7)):
        segs, scores, labels = random_candidates(rng, n)
        kw = dict(sigma=sigma, iou_thresh=iou_thresh, min_score=1e-3,
                  max_detections=max_det, class_aware=class_aware)
        ref = naive_soft_nms(segs, scores, labels, **kw)
        s, sc, lb = soft_nms(segs, scores, labels, **kw)
        assert isinstance(s, np.ndarray) and s.shape == (len(ref), 2)
        assert len(ref) <= max_det
        np.testing.assert_allclose(sc, [x[1] for x in ref], rtol=1e-10, atol=0)
        np.testing.assert_array_equal(s, segs[[x[0] for x in ref]])
        np.testing.assert_array_equal(lb, labels[[x[0] for x in ref]])


@pytest.mark.parametrize("sigma", [0.2, 0.5, 2.0])
@pytest.mark.parametrize("class_aware", [True, False])
def test_batched_torch_kernel_matches_naive_reference(sigma: float, class_aware: bool) -> None:
    """The kernel postprocess runs on accelerators: several videos of different sizes at once."""
    rng = np.random.default_rng(int(sigma * 10) + class_aware)
    sizes, K, max_det = [50, 13, 0, 31], 50, 20
    segs = torch.zeros(len(sizes), K, 2, dtype=torch.float64)
    scores = torch.zeros(len(sizes), K, dtype=torch.float64)
    labels = torch.zeros(len(sizes), K, dtype=torch.long)
    valid = torch.zeros(len(sizes), K, dtype=torch.bool)
    cases = []
    for b, n in enumerate(sizes):
        sg, sc, lb = random_candidates(rng, n)
        order = np.argsort(-sc, kind="stable")
        sg, sc, lb = sg[order], sc[order], lb[order]
        segs[b, :n], scores[b, :n] = torch.from_numpy(sg), torch.from_numpy(sc)
        labels[b, :n], valid[b, :n] = torch.from_numpy(lb), True
        scores[b, n:] = 5.0  # padding with high scores must stay invisible
        cases.append((sg, sc, lb))
    kw = dict(sigma=sigma, iou_thresh=0.1, min_score=1e-3, max_detections=max_det,
              class_aware=class_aware)
    kidx, ks = _soft_nms_batched(segs, scores, labels, valid, **kw)
    for b, (sg, sc, lb) in enumerate(cases):
        ref = naive_soft_nms(sg, sc, lb, **kw)
        alive = torch.isfinite(ks[b])
        assert kidx[b][alive].tolist() == [x[0] for x in ref]
        np.testing.assert_allclose(ks[b][alive].numpy(), [x[1] for x in ref], rtol=1e-10)


# The compiled kernel against today's numpy kernel: bit for bit with the C library's exp
# (what the compiled code calls), and the same kept set within a few ulps with numpy's SIMD exp.
_libm_exp = np.vectorize(math.exp, otypes=[np.float64])


def _adversarial_cases() -> list[tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray], int]]:
    rng = np.random.default_rng(7)
    cases = []
    for n in (1, 2, 37, 400, 2000):
        cases.append((f"random-{n}", random_candidates(rng, n), 200))
    segs, scores, labels = random_candidates(rng, 300)
    tied = np.round(scores * 8) / 8  # many exact ties, within and across classes
    cases.append(("ties", (segs, tied, labels), 200))
    same = np.tile([[3.0, 7.0]], (50, 1))  # identical segments and scores: tIoU 1 everywhere
    cases.append(("identical", (same, np.full(50, 0.5), rng.integers(0, 3, 50)), 200))
    zero = segs.copy()
    zero[::3, 1] = zero[::3, 0]  # zero-length segments, incl. zero-union pairs
    zero[1::7] = 4.0
    cases.append(("zero-length", (zero, scores, labels), 200))
    cases.append(("one-class", (segs, scores, np.zeros(300, dtype=np.int64)), 200))
    cases.append(("all-classes", (segs, scores, np.arange(300, dtype=np.int64)), 200))
    cases.append(("sparse-labels", (segs, scores, labels * 1000 + 5), 200))  # argsort branch
    cases.append(("k-below-max", (segs[:30], scores[:30], labels[:30]), 200))
    cases.append(("max-1", (segs, scores, labels), 1))
    low = scores * 1e-3  # most below min_score from the start
    cases.append(("below-min-score", (segs, low, labels), 200))
    cases.append(("empty", (np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64)), 200))
    return cases


@pytest.mark.parametrize("class_aware", [True, False])
@pytest.mark.parametrize("name,case,max_det", _adversarial_cases(),
                         ids=[c[0] for c in _adversarial_cases()])
def test_compiled_soft_nms_pins_the_numpy_reference(name: str, case: tuple, max_det: int,
                                                    class_aware: bool) -> None:
    segs, scores, labels = case
    order = np.argsort(-scores, kind="stable")
    segs, scores, labels = segs[order], scores[order], labels[order]
    for sigma, iou in ((0.5, 0.1), (0.2, 0.0), (2.0, 0.7)):
        kw = dict(sigma=sigma, iou_thresh=iou, min_score=1e-3, max_detections=max_det,
                  class_aware=class_aware)
        got_idx, got = _soft_nms_cpu(segs, scores, labels, **kw)
        ref_idx, ref = _soft_nms_reference(segs, scores, labels, exp=_libm_exp, **kw)
        np.testing.assert_array_equal(got_idx, ref_idx)
        np.testing.assert_array_equal(got, ref)  # bit for bit
        np_idx, np_scores = _soft_nms_reference(segs, scores, labels, **kw)
        np.testing.assert_array_equal(got_idx, np_idx)
        np.testing.assert_allclose(got, np_scores, rtol=1e-14, atol=0)
        assert got_idx.dtype == np.int64 and got.dtype == np.float64


def test_compiled_soft_nms_is_lazy() -> None:
    """``import amnet`` (and the inference package) must not load the compiler."""
    import subprocess
    import sys

    code = ("import sys, amnet, amnet.inference, amnet.engine; "
            "sys.exit(1 if 'numba' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_soft_nms_min_score_drops_decayed_candidates() -> None:
    segs = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 9.0]])
    scores = np.array([0.9, 0.8, 0.7])
    kw = dict(sigma=0.5, iou_thresh=0.0, max_detections=10, class_aware=True)
    _, sc, _ = soft_nms(segs, scores, np.zeros(3, int), min_score=0.0, **kw)
    # after 0.9 is kept: [0,9] (tIoU 0.9) decays less than the duplicate (tIoU 1) and overtakes it
    second, third = 0.7 * math.exp(-0.81 / 0.5), 0.8 * math.exp(-2) * math.exp(-0.81 / 0.5)
    assert sc.tolist() == pytest.approx([0.9, second, third], rel=1e-12)
    _, sc, _ = soft_nms(segs, scores, np.zeros(3, int), min_score=0.2, **kw)
    assert sc.tolist() == [0.9]  # 0.139 and 0.108 fall below 0.2


def test_soft_nms_is_class_aware() -> None:
    segs = np.array([[0.0, 10.0], [0.0, 10.0]])
    scores = np.array([0.9, 0.8])
    kw = dict(sigma=0.5, iou_thresh=0.1, min_score=1e-3, max_detections=10)
    _, sc, lb = soft_nms(segs, scores, np.array([0, 1]), class_aware=True, **kw)
    assert sc.tolist() == [0.9, 0.8] and lb.tolist() == [0, 1]
    _, sc, _ = soft_nms(segs, scores, np.array([0, 1]), class_aware=False, **kw)
    assert sc[1] == pytest.approx(0.8 * math.exp(-1 / 0.5))
    _, sc, _ = soft_nms(segs, scores, np.array([1, 1]), class_aware=True, **kw)
    assert sc[1] == pytest.approx(0.8 * math.exp(-1 / 0.5))


def test_soft_nms_ties_keep_input_order_across_classes() -> None:
    segs = np.array([[0.0, 1.0], [5.0, 6.0], [9.0, 10.0]])
    scores = np.array([0.5, 0.5, 0.5])
    kw = dict(sigma=0.5, iou_thresh=0.1, min_score=1e-3, max_detections=10, class_aware=True)
    _, _, lb = soft_nms(segs, scores, np.array([2, 0, 1]), **kw)
    assert lb.tolist() == [2, 0, 1]
    kidx, _ = _soft_nms_batched(torch.from_numpy(segs)[None], torch.from_numpy(scores)[None],
                                torch.tensor([[2, 0, 1]]), torch.ones(1, 3, dtype=torch.bool),
                                **kw)
    assert kidx[0].tolist() == [0, 1, 2]


def test_soft_nms_iou_thresh_and_torch_and_empty() -> None:
    segs = torch.tensor([[0.0, 10.0], [5.0, 15.0]])  # tIoU 1/3
    scores = torch.tensor([0.9, 0.8])
    kw = dict(sigma=0.5, min_score=1e-3, max_detections=10)
    s, sc, lb = soft_nms(segs, scores, torch.zeros(2), iou_thresh=0.5, **kw)
    assert isinstance(sc, torch.Tensor) and sc.tolist() == pytest.approx([0.9, 0.8])
    _, sc, _ = soft_nms(segs, scores, torch.zeros(2), iou_thresh=0.3, **kw)
    assert sc[1].item() == pytest.approx(0.8 * math.exp(-(1 / 9) / 0.5))
    s, sc, lb = soft_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), iou_thresh=0.1, **kw)
    assert s.shape == (0, 2) and sc.shape == (0,) and lb.shape == (0,)


# --------------------------------------------------------------------------- postprocess

def make_output(cls: torch.Tensor, offsets: torch.Tensor, match: torch.Tensor | None,
                mask: torch.Tensor) -> ModelOutput:
    N = cls.shape[1]
    return ModelOutput(cls_logits=cls, offsets=offsets, match_logits=match,
                       points=torch.arange(N, dtype=torch.float32),
                       strides=torch.ones(N), level_ids=torch.zeros(N, dtype=torch.long),
                       mask=mask, level_lengths=[N])


def meta(vid: str, **kw: float) -> dict:
    return {"video_id": vid, "fps": 30.0, "stride": 4, "window": 16, "duration": 100.0,
            "offset": 0, **kw}


def test_postprocess_single_candidate_decodes_to_seconds() -> None:
    N, C = 20, 3
    cls = torch.full((1, N, C), -20.0)
    cls[0, 12, 1] = 5.0
    offsets = torch.zeros(1, N, 2)
    offsets[0, 12] = torch.tensor([2.0, 3.0])
    out = make_output(cls, offsets, torch.full((1, N), 3.0), torch.ones(1, N, dtype=torch.bool))
    (d,) = postprocess(out, [meta("v", offset=5)], InferConfig())
    assert len(d) == 1 and d.labels.tolist() == [1] and d.video_id == "v"
    assert d.scores[0] == pytest.approx(1 / (1 + math.exp(-5)) * math.tanh(3))
    # Eq. 13 with the window offset: (12 + 5 - 2, 12 + 5 + 3) snippets → seconds
    assert d.segments[0].tolist() == pytest.approx([(15 * 4 + 8) / 30, (20 * 4 + 8) / 30])
    assert d.segments.dtype == np.float64 and d.labels.dtype == np.int64


def test_postprocess_masks_padding_limits_and_batches() -> None:
    torch.manual_seed(0)
    B, N, C = 3, 64, 4
    cls = torch.randn(B, N, C) * 2
    offsets = torch.rand(B, N, 2) * 6
    match = torch.randn(B, N) + 1
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 40:] = False
    cls[1, 40:] = 30.0  # padded points with huge scores must never show up
    mask[2] = False  # a video with nothing valid
    out = make_output(cls, offsets, match, mask)
    metas = [meta("a"), meta("b", fps=25.0, stride=8), meta("c")]
    cfg = InferConfig(pre_nms_topk=30, max_detections=12, min_duration=0.0)
    dets = postprocess(out, metas, cfg)
    assert [d.video_id for d in dets] == ["a", "b", "c"]
    assert 0 < len(dets[0]) <= 12 and 0 < len(dets[1]) <= 12
    assert dets[2].segments.shape == (0, 2) and dets[2].scores.shape == (0,)
    for d in dets[:2]:
        assert np.all(np.diff(d.scores) <= 0) and np.all(d.scores >= cfg.min_score)
    # padded points of video b would decode past snippet 40: nothing there comes from them
    top_b = postprocess(out, metas, InferConfig(pre_nms_topk=5, max_detections=100,
                                                min_duration=0.0, nms_sigma=1e9))[1]
    assert len(top_b) <= 5  # pre-NMS top-k bounds the output (sigma huge: no suppression)
    # batching gives the same result as one video at a time
    for b in range(B):
        one = make_output(cls[b:b + 1], offsets[b:b + 1], match[b:b + 1], mask[b:b + 1])
        (single,) = postprocess(one, [metas[b]], cfg)
        np.testing.assert_allclose(single.scores, dets[b].scores)
        np.testing.assert_array_equal(single.segments, dets[b].segments)
        np.testing.assert_array_equal(single.labels, dets[b].labels)


def test_both_nms_branches_of_postprocess_agree() -> None:
    """CPU runs the numpy kernel; accelerators the batched one: same detections."""
    rng = np.random.default_rng(3)
    B, K = 3, 120
    segs, scores, labels, keep = [], [], [], []
    for b in range(B):
        sg, sc, lb = random_candidates(rng, K, n_classes=4)
        order = np.argsort(-sc, kind="stable")
        segs.append(sg[order])
        scores.append(sc[order])
        labels.append(lb[order])
        keep.append(rng.random(K) < (0.9 if b < 2 else 0.0))  # last video: nothing valid
    args = [torch.from_numpy(np.stack(x)) for x in (segs, scores, labels, keep)]
    cfg = InferConfig(max_detections=30)
    a = _nms_per_video(*args, cfg, batched=False)
    b = _nms_per_video(*args, cfg, batched=True)
    assert len(a[0][1]) == 30 and len(a[2][1]) == 0
    for (sa, ca, la), (sb, cb, lb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_allclose(ca, cb, rtol=1e-12)
        np.testing.assert_array_equal(la, lb)


def test_postprocess_equals_topk_then_reference_nms() -> None:
    torch.manual_seed(1)
    N, C = 50, 3
    cls, offsets, match = torch.randn(1, N, C) * 2, torch.rand(1, N, 2) * 8, torch.randn(1, N)
    out = make_output(cls, offsets, match, torch.ones(1, N, dtype=torch.bool))
    cfg = InferConfig(pre_nms_topk=40, max_detections=15, min_duration=0.0)
    (d,) = postprocess(out, [meta("v")], cfg)
    conf = (torch.sigmoid(cls.double()) * torch.tanh(match.double())[..., None])[0].numpy()
    flat = conf.reshape(-1)
    idx = [i for i in np.argsort(-flat, kind="stable") if flat[i] > cfg.pre_nms_thresh][:40]
    pt, lab = np.array(idx) // C, np.array(idx) % C
    segs = decode_segments(torch.tensor(pt, dtype=torch.float64), offsets[0, pt],
                           fps=30.0, stride=4, window=16).numpy().clip(0, 100)
    ref = naive_soft_nms(segs, flat[idx], lab, sigma=cfg.nms_sigma, iou_thresh=cfg.nms_iou_thresh,
                         min_score=cfg.min_score, max_detections=15, class_aware=True)
    np.testing.assert_allclose(d.scores, [x[1] for x in ref], rtol=1e-10)
    np.testing.assert_array_equal(d.labels, lab[[x[0] for x in ref]])


def test_topk_per_level_keeps_coarse_levels_that_a_global_topk_crowds_out() -> None:
    """Level 0 (40 points) outscores level 1 (10 long actions): a global top-8 keeps only
    level 0; ``infer.topk_per_level=4`` keeps 4 of each level, in descending score order."""
    n0, n1, C = 40, 10, 2
    cls = torch.full((1, n0 + n1, C), -20.0)
    cls[0, :n0, 0] = torch.linspace(6.0, 4.0, n0)           # dense level: high scores
    cls[0, n0:, 1] = torch.linspace(3.0, 1.0, n1)           # coarse level: lower
    offsets = torch.ones(1, n0 + n1, 2)
    offsets[0, n0:] = 20.0
    lvl = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    out = ModelOutput(cls_logits=cls, offsets=offsets, match_logits=None,
                      points=torch.cat([torch.arange(float(n0)) * 2 + 30,
                                        torch.arange(float(n1)) * 16 + 30]),
                      strides=torch.cat([torch.ones(n0), torch.full((n1,), 2.0)]),
                      level_ids=lvl, mask=torch.ones(1, n0 + n1, dtype=torch.bool),
                      level_lengths=[n0, n1])
    base = dict(confidence="sigmoid", max_detections=100, min_duration=0.0, nms_sigma=1e9)
    (glob,) = postprocess(out, [meta("v")], InferConfig(pre_nms_topk=8, **base))
    assert len(glob) == 8 and set(glob.labels.tolist()) == {0}
    (per,) = postprocess(out, [meta("v")],
                         InferConfig(pre_nms_topk=8, topk_per_level=4, **base))
    assert len(per) == 8 and sorted(per.labels.tolist()) == [0] * 4 + [1] * 4
    assert np.all(np.diff(per.scores) <= 0)
    # the coarse level's four best are there (its long segments, 40 snippets)
    long = per.segments[per.labels == 1]
    assert np.allclose(long[:, 1] - long[:, 0], 40 * 4 / 30)


def test_topk_per_level_on_a_batch_equals_each_video_alone() -> None:
    """A batch of two videos (evaluation batches them) gives each video what it gets alone."""
    gen = torch.Generator().manual_seed(3)
    n0, n1, C = 30, 8, 3
    lvl = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    points = torch.cat([torch.arange(float(n0)) * 2 + 30, torch.arange(float(n1)) * 16 + 30])
    strides = torch.cat([torch.ones(n0), torch.full((n1,), 2.0)])

    def output(cls: torch.Tensor, offsets: torch.Tensor) -> ModelOutput:
        return ModelOutput(cls_logits=cls, offsets=offsets, match_logits=None, points=points,
                           strides=strides, level_ids=lvl,
                           mask=torch.ones(len(cls), n0 + n1, dtype=torch.bool),
                           level_lengths=[n0, n1])

    cls = torch.randn(2, n0 + n1, C, generator=gen) * 3
    offsets = torch.rand(2, n0 + n1, 2, generator=gen) * 10 + 0.5
    cfg = InferConfig(confidence="sigmoid", pre_nms_topk=12, topk_per_level=5, max_detections=50)
    both = postprocess(output(cls, offsets), [meta("a"), meta("b")], cfg)
    for b, name in enumerate("ab"):
        (alone,) = postprocess(output(cls[b:b + 1], offsets[b:b + 1]), [meta(name)], cfg)
        assert both[b].video_id == name and len(both[b]) == len(alone) > 0
        np.testing.assert_array_equal(both[b].labels, alone.labels)
        np.testing.assert_allclose(both[b].scores, alone.scores)
        np.testing.assert_allclose(both[b].segments, alone.segments)


def test_postprocess_clips_and_drops_short_segments() -> None:
    N = 10
    cls = torch.full((1, N, 1), -20.0)
    cls[0, [1, 8], 0] = 5.0
    offsets = torch.zeros(1, N, 2)
    offsets[0, 1] = torch.tensor([50.0, 10.0])  # (-49, 11) snippets → clipped to [0, 1] s
    offsets[0, 8] = torch.tensor([0.0, 0.0])  # zero length → dropped by min_duration
    out = make_output(cls, offsets, None, torch.ones(1, N, dtype=torch.bool))
    (d,) = postprocess(out, [meta("v", duration=1.0)], InferConfig(confidence="sigmoid"))
    assert len(d) == 1 and d.segments[0].tolist() == [0.0, 1.0]  # unclipped (-6.3, 1.73) s


def test_fusion_with_external_video_scores(tmp_path: Path) -> None:
    names = ["run", "jump", "swim"]
    f = tmp_path / "cls.json"
    f.write_text(json.dumps({"class": names, "results": {"v_abc": [0.1, 0.7, 0.2]}}))
    scores = load_video_scores(f)
    assert scores == {"v_abc": {"run": 0.1, "jump": 0.7, "swim": 0.2}}
    N = 8
    # multi-class model: confidence × external score, only the top-2 external classes kept
    cls = torch.full((1, N, 3), -20.0)
    cls[0, 2] = torch.tensor([4.0, 0.0, 1.0])
    out = make_output(cls, torch.ones(1, N, 2), None, torch.ones(1, N, dtype=torch.bool))
    cfg = InferConfig(confidence="sigmoid", video_topk=2)
    (d,) = postprocess(out, [meta("abc")], cfg, scores, names)  # id without "v_" prefix
    got = dict(zip(d.labels.tolist(), d.scores.tolist(), strict=True))
    assert set(got) == {1, 2}  # "run" is not among the video's top-2 classes
    assert got[1] == pytest.approx(0.5 * 0.7)
    assert got[2] == pytest.approx(1 / (1 + math.exp(-1)) * 0.2)
    # class-agnostic model: each proposal gets the top-2 classes
    agn = make_output(cls[..., :1], torch.ones(1, N, 2), None, torch.ones(1, N, dtype=torch.bool))
    (d,) = postprocess(agn, [meta("abc")], cfg, scores, names)
    assert d.labels.tolist() == [1, 2]
    p = 1 / (1 + math.exp(-4))
    assert d.scores.tolist() == pytest.approx([p * 0.7, p * 0.2])
    # cfg path, cached load
    (d2,) = postprocess(agn, [meta("abc")], InferConfig(confidence="sigmoid",
                                                         video_scores=str(f)), None, names)
    assert d2.labels.tolist() == d.labels.tolist()
    with pytest.raises(DataError, match="video 'zzz' has no entry"):
        postprocess(agn, [meta("zzz")], cfg, scores, names)
    with pytest.raises(ConfigError, match="class_names"):
        postprocess(agn, [meta("abc")], cfg, scores, None)


@pytest.mark.parametrize(("content", "match"), [
    ("{", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"class": ["a", "b"], "results": {"v": [0.1]}}', "video 'v': expected a list of 2"),
    ('{"v": {"a": NaN}}', "video 'v', class 'a': score must be a finite"),
    ('{"v": [0.1]}', r"video 'v': expected \{label: score\}"),
])
def test_load_video_scores_errors(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "s.json"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        load_video_scores(f)
    with pytest.raises(DataError, match="not found"):
        load_video_scores(tmp_path / "missing.json")


def test_postprocess_rejects_wrong_metas() -> None:
    out = make_output(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), None,
                      torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(PredictionError, match="1 metas for a batch of 2"):
        postprocess(out, [meta("a")], InferConfig(confidence="sigmoid"))
    bad = meta("b")
    del bad["fps"]
    with pytest.raises(PredictionError, match=r"metas\[1\] \(video 'b'\) lacks 'fps'"):
        postprocess(out, [meta("a"), bad], InferConfig(confidence="sigmoid"))
    with pytest.raises(PredictionError, match=r"video 'b'\): 'fps' must be a finite positive"):
        postprocess(out, [meta("a"), meta("b", fps=0.0)], InferConfig(confidence="sigmoid"))


# --------------------------------------------------------------------------- results JSON

def test_results_json_round_trips_through_the_evaluator() -> None:
    names = ["A", "B"]
    dets = [Detections("v1", np.array([[1.0, 5.0], [10.0, 20.0]]), np.array([0.9, 0.4]),
                       np.array([0, 1])),
            Detections("v2", np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))]
    js = to_results_json(dets, names)
    assert js["version"] == "amnet" and js["external_data"]["used"] is False
    assert js["results"]["v1"][1] == {"label": "B", "score": 0.4, "segment": [10.0, 20.0]}
    assert js["results"]["v2"] == []
    text = json.dumps(js)  # plain JSON types only
    gt = {"database": {"v1": {"subset": "Test", "annotations": [
        {"label": "A", "segment": [1.0, 5.0]}, {"label": "B", "segment": [10.0, 20.0]}]},
        "v2": {"subset": "Test", "annotations": []}}}
    assert evaluate_detections(gt, json.loads(text), tiou=[0.5]).mAP[0.5] == 1.0
    with pytest.raises(PredictionError, match="appears twice"):
        to_results_json(dets + dets[:1], names)
    with pytest.raises(PredictionError, match="label index 1 outside the 1 class names"):
        to_results_json(dets, names[:1])


# --------------------------------------------------------------------------- windows

class _Pointwise(torch.nn.Module):
    """A model without temporal context: windowed inference must equal whole-video inference."""

    def __init__(self, in_dim: int, n_classes: int) -> None:
        super().__init__()
        self.in_dim, self.n_classes = in_dim, n_classes
        self.proj = torch.nn.Linear(in_dim, n_classes + 3)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        y = self.proj(feats.transpose(1, 2))  # (B, T, C + 3)
        T = feats.shape[2]
        return ModelOutput(
            cls_logits=y[..., :self.n_classes], offsets=torch.nn.functional.softplus(
                y[..., self.n_classes:self.n_classes + 2]) * 3,
            match_logits=y[..., -1], points=torch.arange(T, dtype=torch.float32),
            strides=torch.ones(T), level_ids=torch.zeros(T, dtype=torch.long), mask=mask,
            level_lengths=[T])


def test_window_starts_cover_the_video_aligned() -> None:
    from amnet.inference.windows import window_starts

    assert window_starts(100, 0, 16, 4) == [0] and window_starts(100, 128, 16, 4) == [0]
    for length, w, o, a in ((1000, 128, 32, 4), (1001, 128, 0, 8), (129, 128, 64, 16)):
        st = window_starts(length, w, o, a)
        assert st[0] == 0 and all(s % a == 0 for s in st) and st[-1] + w >= length
        assert all(0 < b - s <= w - o for s, b in itertools.pairwise(st))
    with pytest.raises(ConfigError, match="step between windows"):
        window_starts(1000, 16, 14, 4)


def _batch(lengths: list[int], dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor,
                                                                 list[dict]]:
    g = torch.Generator().manual_seed(seed)
    T = -(-max(lengths) // 8) * 8
    feats = torch.randn(len(lengths), dim, T, generator=g)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    feats = feats * mask[:, None]
    metas = [meta(f"v{i}", duration=n * 4 / 30) for i, n in enumerate(lengths)]
    return feats, mask, metas


def test_windowed_inference_equals_whole_video_without_temporal_context() -> None:
    from amnet.inference.windows import infer_batch

    torch.manual_seed(0)
    model = _Pointwise(6, 3).eval()
    feats, mask, metas = _batch([700, 333], 6)
    cfg = InferConfig(pre_nms_topk=100000, max_detections=100000)
    whole = infer_batch(model, feats, mask, metas, cfg)
    for window, overlap in ((128, 32), (64, 0), (256, 200)):
        wcfg = InferConfig(pre_nms_topk=100000, max_detections=100000, window=window,
                           window_overlap=overlap)
        with torch.no_grad():
            win = infer_batch(model, feats, mask, metas, wcfg, align=8)
        for a, b in zip(whole, win, strict=True):
            assert a.video_id == b.video_id and len(a) == len(b) > 0
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
            np.testing.assert_allclose(a.segments, b.segments, rtol=1e-6)


def test_windowed_amnet_equals_whole_video_when_it_fits_and_runs_when_not() -> None:
    from amnet.config import load_config
    from amnet.engine import build_model
    from amnet.inference.windows import infer_batch

    cfg = load_config(None, ["model.embed_dim=16", "model.n_heads=2"])
    torch.manual_seed(0)
    model = build_model(cfg, 8, 3).eval()
    align = 2 ** (cfg.model.fpn_levels - 1)
    feats, mask, metas = _batch([200, 120], 8)
    with torch.no_grad():
        ref = postprocess(model(feats, mask), metas, cfg.infer)
        same = infer_batch(model, feats, mask, metas,
                           dataclasses.replace(cfg.infer, window=256),
                           align=align)
        long_cfg = dataclasses.replace(cfg.infer, window=64, window_overlap=16)
        win = infer_batch(model, feats, mask, metas, long_cfg, align=align)
    for a, b in zip(ref, same, strict=True):  # fits in one window: the whole-video path
        np.testing.assert_array_equal(a.segments, b.segments)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.labels, b.labels)
    for d, m in zip(win, metas, strict=True):
        assert len(d) > 0 and d.segments.min() >= 0 and d.segments.max() <= m["duration"]
