"""False-positive analysis in the manner of DETAD (Alwassel et al., ECCV 2018), the paper's Fig. 7.

Rules (DETAD's published definitions, written anew here; each rule is checked in
``tests/evaluation/test_analysis.py``):

1. **Top-10G.** For each class *c* with *G_c* ground-truth instances in the subset, only its
   ``limit_factor · G_c`` highest-scored predictions are kept (``limit_factor`` = 10); predictions
   of a class with no ground truth in the subset are dropped, as DETAD keeps none for it.
2. **True positives** follow the ActivityNet matching rule at the analysis tIoU *t* (0.5):
   a class's predictions are visited by decreasing score; each one is matched to the
   same-class, same-video ground truth of highest tIoU that is ≥ *t* and not already matched
   by a higher-scored prediction; otherwise it is a false positive.
3. **Error type of a false positive.** Take the ground truth g* of *any* label in the same
   video with the highest tIoU with the prediction (the first one on a tie) and its tIoU *u*:

   ====================  ============================  =====================
   condition             label(g*) == predicted label  label(g*) != label
   ====================  ============================  =====================
   u ≥ t                 double detection              wrong label
   min_tiou ≤ u < t      localization error            confusion error
   u < min_tiou          background error              background error
   ====================  ============================  =====================

   A video without ground truth gives background errors. Precedence is DETAD's: only g*
   decides, so a prediction with tIoU 0.6 to a wrong-label instance and 0.55 to an already
   matched right-label one is a wrong-label error, not a double detection. ``min_tiou`` = 0.1.
4. **False-positive profile.** Within each class the kept predictions are ranked by score and
   cut into slices of *G_c*: slice *k*G holds ranks ``[(k-1)·G_c, k·G_c)``. Each slice reports
   the share of true positives and of each error type among its predictions (DETAD's stacked
   chart, x axis "1G … 10G").
5. **Removing an error type** drops the false positives of that type (classified at each
   tIoU of the average) and re-scores the rest; the gain is the new average mAP minus the
   average mAP of the same top-10G predictions. Dropping false positives never changes which
   predictions match, so this equals DETAD's re-use of the original TP flags.

Deviation, on purpose: DETAD's plot script reports the gain in *normalised* mAP_N; here it is
the plain average mAP of :mod:`amnet.evaluation.map` (the paper's headline metric), averaged
over ``gain_tiou`` (DETAD on THUMOS14 uses only 0.5, the default here too).

Only :func:`average_map_gain` needs :mod:`amnet.evaluation.map`; the rest is plain numpy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amnet.errors import ConfigError, DataError
from amnet.evaluation.parse import parse_ground_truth, parse_predictions
from amnet.evaluation.tiou import pairwise_tiou

log = logging.getLogger(__name__)

#: Codes of :func:`classify_predictions`; 0 is a true positive, 1–5 the DETAD error types.
TRUE_POSITIVE = 0
ERROR_TYPES: tuple[str, ...] = (
    "double_detection", "wrong_label", "localization", "confusion", "background")
ERROR_CODES: dict[str, int] = {name: i + 1 for i, name in enumerate(ERROR_TYPES)}
#: Names as DETAD's chart prints them (legend of the paper's Fig. 7).
DISPLAY_NAMES: dict[str, str] = {
    "true_positive": "True Positive",
    "double_detection": "Double Detection Err",
    "wrong_label": "Wrong Label Err",
    "localization": "Localization Err",
    "confusion": "Confusion Err",
    "background": "Background Err",
}


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Instances:
    """A flat table of segments: ``video`` and ``label`` index into :class:`AnalysisSet`."""

    video: np.ndarray      # (N,) int64
    segments: np.ndarray   # (N, 2) float64, seconds
    label: np.ndarray      # (N,) int64
    score: np.ndarray      # (N,) float64 (ones for ground truth)

    def __len__(self) -> int:
        return int(self.video.shape[0])

    def take(self, idx: np.ndarray) -> Instances:
        return Instances(self.video[idx], self.segments[idx], self.label[idx], self.score[idx])


@dataclass(frozen=True)
class AnalysisSet:
    """Ground truth of one subset and the predictions to analyse, as index arrays.

    ``videos[:n_subset_videos]`` are the subset's videos; any after them are videos that have
    predictions but are outside the subset (no ground truth, so every prediction there is a
    false positive, as the mAP evaluator scores it).
    """

    subset: str
    videos: list[str]
    n_subset_videos: int
    classes: list[str]     # ground-truth labels of the subset, sorted (then any kept extras)
    durations: np.ndarray  # (V,) seconds, NaN where the annotation file gives none
    gt: Instances
    pred: Instances

    @property
    def gt_per_class(self) -> np.ndarray:
        """(C,) number of ground-truth instances of each class."""
        return np.bincount(self.gt.label, minlength=len(self.classes))

    def with_predictions(self, idx: np.ndarray) -> AnalysisSet:
        return dataclasses.replace(self, pred=self.pred.take(idx))

    def results(self, keep: np.ndarray | None = None) -> dict[str, Any]:
        """Predictions (optionally a boolean or index selection) as an ActivityNet results dict."""
        idx = np.arange(len(self.pred)) if keep is None else np.asarray(keep)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        out: dict[str, list[dict[str, Any]]] = {}
        p = self.pred
        for i in idx:
            out.setdefault(self.videos[p.video[i]], []).append({
                "label": self.classes[p.label[i]], "score": float(p.score[i]),
                "segment": [float(p.segments[i, 0]), float(p.segments[i, 1])]})
        return {"results": out}


def load_detections(gt: Mapping[str, Any], preds: Mapping[str, Any], *,
                    subset: str = "Test", lenient: bool = False,
                    keep_unknown_labels: bool = False) -> AnalysisSet:
    """Parse an ActivityNet-style annotation dict and a results dict into index arrays.

    ``gt``: ``{"database": {video: {"subset", "duration", "annotations": [{"label",
    "segment"}]}}}``; ``preds``: ``{"results": {video: [{"label", "score", "segment"}]}}``.
    Parsed by :mod:`amnet.evaluation.parse`, as :mod:`amnet.evaluation.map` does, so both count
    the same false positives: ``subset`` is matched case-insensitively; predictions on videos
    outside the subset are kept (false positives, DETAD's background); predictions whose label
    the ground truth uses only outside the subset are dropped (no class to score; top-10G keeps
    none of them); a label the ground truth never uses raises :class:`PredictionError` unless
    ``lenient`` (then dropped). ``keep_unknown_labels`` keeps every label (extra classes with
    G = 0), for drawing a timeline. Reversed segments are refused even when ``lenient``.

    Raises :class:`DataError` / :class:`PredictionError` naming the video, entry and field.
    """
    g = parse_ground_truth(gt, subset)
    videos = list(g.videos)
    n_subset = len(videos)
    durations = [g.durations[v] for v in videos]
    classes = sorted(g.classes)
    cidx = {c: i for i, c in enumerate(classes)}
    to_sorted = np.array([cidx[c] for c in g.classes], dtype=np.int64)
    gt_inst = Instances(video=g.video, segments=g.segments,
                        label=to_sorted[g.labels] if len(g.labels) else g.labels,
                        score=np.ones(len(g.labels)))

    strict = not (lenient or keep_unknown_labels)
    p = parse_predictions(preds, known=g.label_index if strict else None,
                          allow_reversed=False, lenient_hint=False)
    # label → class index; -1: dropped (a GT label outside the subset); -2: skipped (unknown,
    # lenient). Filled in row order, so extra classes (keep_unknown_labels) keep file order.
    code: dict[str, int] = {}

    def label_code(label: str) -> int:
        if label not in code:
            if label in cidx:
                code[label] = cidx[label]
            elif keep_unknown_labels:
                cidx[label] = code[label] = len(classes)
                classes.append(label)
            else:
                code[label] = -1 if label in g.label_index else -2
        return code[label]

    # label_names are in first-appearance order: extra classes still come in file order
    lut = np.array([label_code(name) for name in p.label_names] or [-1], dtype=np.int64)
    label = lut[p.label_codes]
    dropped, skipped = int((label == -1).sum()), int((label == -2).sum())
    keep = label >= 0
    # Subset videos keep their index; others with a kept row follow in file order.
    video_code = np.full(len(p.video_ids), -1, dtype=np.int64)
    has_kept = np.bincount(p.video[keep], minlength=len(p.video_ids)) > 0
    for k, vid in enumerate(p.video_ids):
        if vid in g.videos:
            video_code[k] = g.videos[vid]
        elif has_kept[k]:
            video_code[k] = len(videos)
            videos.append(vid)
            durations.append(g.durations.get(vid, math.nan))
    if len(videos) > n_subset:
        log.info("predictions: %d video(s) outside subset %r; their detections are false "
                 "positives", len(videos) - n_subset, subset)
    if dropped:
        log.info("predictions: dropped %d detection(s) of labels without ground truth in %r",
                 dropped, subset)
    if skipped:
        log.warning("lenient: skipped %d detection(s) whose label is not a ground-truth class",
                    skipped)
    pred_inst = Instances(video=video_code[p.video[keep]], segments=p.segments[keep],
                          label=label[keep], score=p.scores[keep])
    return AnalysisSet(subset, videos, n_subset, classes, np.array(durations), gt_inst,
                       pred_inst)


# --------------------------------------------------------------------------- matching

def _by_video(video: np.ndarray, n_videos: int,
              order: np.ndarray | None = None) -> list[np.ndarray]:
    """Indices grouped per video, each group in ``order`` (default: index order)."""
    order = np.arange(video.shape[0]) if order is None else order
    order = order[np.argsort(video[order], kind="stable")]
    bounds = np.searchsorted(video[order], np.arange(n_videos + 1))
    return [order[bounds[v]:bounds[v + 1]] for v in range(n_videos)]


def score_order(pred: Instances) -> np.ndarray:
    """Indices by decreasing score; ties keep file order (stable sort)."""
    return np.argsort(-pred.score, kind="stable")


def match_predictions(det: AnalysisSet, tiou: Sequence[float] | float) -> np.ndarray:
    """ActivityNet matching (rule 2) at each threshold → (T, P) ground-truth index or -1.

    Matching is independent across videos, so each video is solved on its own tIoU matrix;
    a Python loop over the predictions that can match anything is unavoidable (greedy locks).
    """
    thr = np.atleast_1d(np.asarray(tiou, dtype=np.float64))
    n_t = thr.shape[0]
    out = np.full((n_t, len(det.pred)), -1, dtype=np.int64)
    gt_groups = _by_video(det.gt.video, len(det.videos))
    pred_groups = _by_video(det.pred.video, len(det.videos), score_order(det.pred))
    rows = np.arange(n_t)
    for g_idx, p_idx in zip(gt_groups, pred_groups, strict=True):
        if g_idx.size == 0 or p_idx.size == 0:
            continue
        iou = pairwise_tiou(det.pred.segments[p_idx], det.gt.segments[g_idx])
        iou[det.pred.label[p_idx][:, None] != det.gt.label[g_idx][None, :]] = -1.0
        best = iou.max(axis=1)
        locked = np.zeros((n_t, g_idx.size), dtype=bool)
        for i in np.flatnonzero(best >= thr.min()):
            ok = (iou[i][None, :] >= thr[:, None]) & ~locked
            j = np.where(ok, iou[i][None, :], -np.inf).argmax(axis=1)
            hit = ok[rows, j]
            locked[rows[hit], j[hit]] = True
            out[hit, p_idx[i]] = g_idx[j[hit]]
    return out


def classify_predictions(det: AnalysisSet, tiou: float = 0.5, *, min_tiou: float = 0.1,
                         matched: np.ndarray | None = None) -> np.ndarray:
    """(P,) code per prediction: :data:`TRUE_POSITIVE` or an :data:`ERROR_CODES` value (rule 3).

    ``matched`` (P,) may pass a row of :func:`match_predictions` already computed at ``tiou``.
    """
    if not 0 < min_tiou <= tiou <= 1:
        raise ConfigError(f"need 0 < min_tiou <= tiou <= 1, got min_tiou={min_tiou}, tiou={tiou}")
    if matched is None:
        matched = match_predictions(det, tiou)[0]
    codes = np.full(len(det.pred), ERROR_CODES["background"], dtype=np.int8)
    codes[matched >= 0] = TRUE_POSITIVE
    gt_groups = _by_video(det.gt.video, len(det.videos))
    for p_idx, g_idx in zip(_by_video(det.pred.video, len(det.videos)), gt_groups, strict=True):
        p_idx = p_idx[matched[p_idx] < 0]
        if p_idx.size == 0 or g_idx.size == 0:
            continue  # no ground truth in the video: background (already set)
        iou = pairwise_tiou(det.pred.segments[p_idx], det.gt.segments[g_idx])
        star = iou.argmax(axis=1)  # first maximum on ties
        top = iou[np.arange(p_idx.size), star]
        same = det.gt.label[g_idx][star] == det.pred.label[p_idx]
        high, mid = top >= tiou, (top >= min_tiou) & (top < tiou)
        codes[p_idx[high & same]] = ERROR_CODES["double_detection"]
        codes[p_idx[high & ~same]] = ERROR_CODES["wrong_label"]
        codes[p_idx[mid & same]] = ERROR_CODES["localization"]
        codes[p_idx[mid & ~same]] = ERROR_CODES["confusion"]
    return codes


def class_rank(det: AnalysisSet) -> np.ndarray:
    """(P,) 0-based rank of each prediction among its class's predictions, by score."""
    order = score_order(det.pred)
    order = order[np.argsort(det.pred.label[order], kind="stable")]
    first = np.searchsorted(det.pred.label[order], det.pred.label[order], side="left")
    rank = np.empty(len(det.pred), dtype=np.int64)
    rank[order] = np.arange(order.size) - first
    return rank


def limit_predictions(det: AnalysisSet, limit_factor: int = 10) -> AnalysisSet:
    """Keep each class's ``limit_factor · G_c`` highest-scored predictions (rule 1)."""
    if limit_factor < 1:
        raise ConfigError(f"limit_factor must be >= 1, got {limit_factor}")
    keep = class_rank(det) < limit_factor * det.gt_per_class[det.pred.label]
    return det.with_predictions(np.flatnonzero(keep))


# --------------------------------------------------------------------------- analysis

@dataclass
class FPAnalysis:
    """Result of :func:`analyze_false_positives`; ``to_dict`` is its JSON form."""

    subset: str
    tiou: float
    min_tiou: float
    limit_factor: int
    num_gt: int
    num_predictions: int           # predictions kept by top-10G
    num_true_positives: int
    counts: dict[str, int]         # error type → number of false positives at ``tiou``
    profile: list[dict[str, Any]]  # per slice kG: {"slice", "predictions", shares...} (rule 4)
    gain_tiou: list[float] = field(default_factory=list)
    baseline_average_mAP: float | None = None
    average_mAP_gain: dict[str, float] | None = None

    @property
    def num_false_positives(self) -> int:
        return self.num_predictions - self.num_true_positives

    @property
    def shares(self) -> dict[str, float]:
        """Share of each error type among the false positives (0 when there are none)."""
        n = self.num_false_positives
        return {k: (c / n if n else 0.0) for k, c in self.counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "subset": self.subset, "tiou": self.tiou, "min_tiou": self.min_tiou,
            "limit_factor": self.limit_factor, "num_gt": self.num_gt,
            "num_predictions": self.num_predictions,
            "num_true_positives": self.num_true_positives,
            "num_false_positives": self.num_false_positives,
            "counts": dict(self.counts), "shares": self.shares, "profile": self.profile,
            "gain_tiou": list(self.gain_tiou),
            "baseline_average_mAP": self.baseline_average_mAP,
            "average_mAP_gain": self.average_mAP_gain,
        }


def fp_profile(det: AnalysisSet, codes: np.ndarray, limit_factor: int) -> list[dict[str, Any]]:
    """Shares of TP and each error type within each per-class slice 1G … ``limit_factor``G."""
    slice_of = class_rank(det) // np.maximum(det.gt_per_class[det.pred.label], 1)
    names = ("true_positive", *ERROR_TYPES)
    out = []
    for k in range(limit_factor):
        sel = codes[slice_of == k]
        n = int(sel.size)
        counts = np.bincount(sel, minlength=len(names)) if n else np.zeros(len(names))
        out.append({"slice": f"{k + 1}G", "predictions": n,
                    **{name: (float(c) / n if n else 0.0) for name, c in zip(names, counts,
                                                                            strict=True)}})
    return out


def average_map_gain(det: AnalysisSet, tiou: Sequence[float], *, min_tiou: float = 0.1
                     ) -> tuple[float, dict[str, float]]:
    """Average mAP of ``det``'s predictions, and its gain when each error type is dropped (rule 5).

    The false positives are classified at each threshold of ``tiou`` separately, as DETAD
    does; scoring goes through :func:`amnet.evaluation.map.evaluate_detections`.
    """
    from amnet.evaluation.map import evaluate_detections  # the one step that needs the evaluator

    gt = _gt_dict(det)
    tious = [float(t) for t in tiou]
    base = float(evaluate_detections(gt, det.results(), subset=det.subset,
                                     tiou=tious).average_mAP)
    matched = match_predictions(det, tious)
    fixed = {name: [] for name in ERROR_TYPES}
    for ti, t in enumerate(tious):
        codes = classify_predictions(det, t, min_tiou=min(min_tiou, t), matched=matched[ti])
        for name in ERROR_TYPES:
            r = evaluate_detections(gt, det.results(codes != ERROR_CODES[name]),
                                    subset=det.subset, tiou=[t])
            fixed[name].append(float(r.average_mAP))  # one threshold: average == mAP@t
    return base, {name: float(np.mean(v)) - base for name, v in fixed.items()}


def _gt_dict(det: AnalysisSet) -> dict[str, Any]:
    """The parsed ground truth back as an annotation dict (same videos, subset and labels)."""
    db: dict[str, Any] = {
        v: {"subset": det.subset, "annotations": [],
            **({} if math.isnan(d) else {"duration": float(d)})}
        for v, d in zip(det.videos[:det.n_subset_videos], det.durations, strict=False)}
    g = det.gt
    for i in range(len(g)):
        db[det.videos[g.video[i]]]["annotations"].append({
            "label": det.classes[g.label[i]],
            "segment": [float(g.segments[i, 0]), float(g.segments[i, 1])]})
    return {"database": db}


def analyze_false_positives(gt: Mapping[str, Any], preds: Mapping[str, Any], *,
                            subset: str = "Test", tiou: float = 0.5, min_tiou: float = 0.1,
                            limit_factor: int = 10, gain_tiou: Sequence[float] | None = None,
                            compute_gain: bool = True) -> FPAnalysis:
    """DETAD false-positive analysis of ``preds`` against ``gt`` (rules 1–5 of the module doc).

    Error types are counted at ``tiou`` over the top-``limit_factor``·G predictions; the
    average-mAP gain of removing each type is averaged over ``gain_tiou`` (default
    ``[tiou]``, as DETAD on THUMOS14). ``compute_gain=False`` skips the mAP step.
    """
    det = limit_predictions(load_detections(gt, preds, subset=subset), limit_factor)
    if len(det.gt) == 0:
        raise DataError(f"ground truth: subset {subset!r} has no annotated instance to analyse")
    codes = classify_predictions(det, tiou, min_tiou=min_tiou)
    counts = np.bincount(codes, minlength=len(ERROR_TYPES) + 1)
    result = FPAnalysis(
        subset=subset, tiou=float(tiou), min_tiou=float(min_tiou), limit_factor=limit_factor,
        num_gt=len(det.gt), num_predictions=len(det.pred),
        num_true_positives=int(counts[TRUE_POSITIVE]),
        counts={name: int(counts[ERROR_CODES[name]]) for name in ERROR_TYPES},
        profile=fp_profile(det, codes, limit_factor))
    if compute_gain:
        result.gain_tiou = [float(t) for t in (gain_tiou if gain_tiou is not None else [tiou])]
        result.baseline_average_mAP, result.average_mAP_gain = average_map_gain(
            det, result.gain_tiou, min_tiou=min_tiou)
    log.info("FP analysis (%s, tIoU %.2f): %d predictions, %d TP, errors %s", subset, tiou,
             result.num_predictions, result.num_true_positives, result.counts)
    return result
