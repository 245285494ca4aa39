"""From AMNet's per-point outputs to scored detections in seconds (paper §3.5).

Pipeline of :func:`postprocess`, batched over the videos of a batch on the output's device:

1. confidence per point and class, Eq. 14 (``sigmoid(ŷ)·tanh(m̂)``, or an ablation variant of
   Table 4), padded points (``output.mask`` False) dropped;
2. optional fusion with external video-level class scores (ActivityNet, §4.2);
3. candidates above ``pre_nms_thresh``, the ``pre_nms_topk`` best per video;
4. boundaries by Eq. 13, ``t_s = i − d_s``, ``t_e = i + d_e`` in snippets, then to seconds as
   ``(t · stride + window / 2) / fps``, clipped to [0, duration], shorter than
   ``min_duration`` dropped;
5. class-aware Gaussian Soft-NMS, at most ``max_detections`` per video.

Times are in seconds at the edges (:class:`Detections`, results JSON), snippets inside.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from amnet.config import InferConfig
from amnet.errors import ConfigError, DataError, PredictionError
from amnet.model.output import ModelOutput

__all__ = [
    "Detections",
    "confidence",
    "decode_segments",
    "load_video_scores",
    "postprocess",
    "soft_nms",
    "to_results_json",
]

log = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass
class Detections:
    """One video's detections, sorted by descending score.

    Attributes:
        video_id: the video's id.
        segments: ``(M, 2)`` float64 [start, end] in seconds.
        scores: ``(M,)`` float64 confidence.
        labels: ``(M,)`` int64 class indices.
    """

    video_id: str
    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


# --------------------------------------------------------------------------- Eq. 13-14

def confidence(cls_logits: torch.Tensor, match_logits: torch.Tensor | None, mode: str
               ) -> torch.Tensor:
    """Per-point, per-class confidence ``(B, N, C)`` (Eq. 14 and the Table 4 variants).

    ``"sigmoid"``: ``sigmoid(ŷ)``; ``"sigmoid*sigmoid"``: ``sigmoid(ŷ)·sigmoid(m̂)``;
    ``"sigmoid*tanh"``: ``sigmoid(ŷ)·tanh(m̂)`` (Eq. 14, AMNet's choice). ``cls_logits`` is
    ``(B, N, C)``, ``match_logits`` ``(B, N)`` (``None`` only allowed with ``"sigmoid"``).
    """
    y = torch.sigmoid(cls_logits)
    if mode == "sigmoid":
        return y
    if mode not in ("sigmoid*sigmoid", "sigmoid*tanh"):
        raise ConfigError(f"infer.confidence must be one of sigmoid, sigmoid*sigmoid, "
                          f"sigmoid*tanh; got {mode!r}")
    if match_logits is None:
        raise ConfigError(f"infer.confidence={mode!r} needs the matching score, but the model "
                          "has no matching head (model.matching_head=false); use 'sigmoid'")
    m = match_logits.to(y.dtype)
    m = torch.sigmoid(m) if mode == "sigmoid*sigmoid" else torch.tanh(m)
    return y * m.unsqueeze(-1)


def decode_segments(points: torch.Tensor, offsets: torch.Tensor, *,
                    fps: float | torch.Tensor, stride: float | torch.Tensor,
                    window: float | torch.Tensor) -> torch.Tensor:
    """Eq. 13 boundaries, converted from snippets to seconds.

    Args:
        points: ``(..., N)`` point positions ``i`` in snippets.
        offsets: ``(..., N, 2)`` distances ``(d_s, d_e)`` in snippets.
        fps, stride, window: frames per second, frames between snippets, frames per snippet;
            numbers or tensors broadcastable to ``points`` (e.g. ``(B, 1)`` per video).

    Returns:
        ``(..., N, 2)`` float64 ``[t_s, t_e]`` in seconds, where a snippet position ``t`` maps
        to the centre of its window, ``(t · stride + window / 2) / fps``.
    """
    p = points.to(torch.float64)
    d = offsets.to(device=p.device, dtype=torch.float64)
    snippets = torch.stack((p - d[..., 0], p + d[..., 1]), dim=-1)  # Eq. 13

    def col(x: float | torch.Tensor) -> float | torch.Tensor:
        return x.to(device=p.device, dtype=torch.float64).unsqueeze(-1) \
            if isinstance(x, torch.Tensor) else float(x)

    return (snippets * col(stride) + col(window) / 2) / col(fps)


# --------------------------------------------------------------------------- Soft-NMS

def _soft_nms_batched(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      valid: torch.Tensor, *, sigma: float, iou_thresh: float,
                      min_score: float, max_detections: int, class_aware: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS of ``B`` videos at once.

    ``segs`` ``(B, K, 2)``, ``scores``/``labels``/``valid`` ``(B, K)``. Returns the kept
    candidates' indices ``(B, M)`` in selection order and their decayed scores ``(B, M)``
    (``-inf`` where a video ran out), ``M = min(max_detections, K)``.

    Formulation (Bodla et al. 2017, Gaussian): repeatedly take the highest remaining score,
    keep it, and multiply every other remaining candidate (of the same class when
    ``class_aware``) overlapping it by tIoU ≥ ``iou_thresh`` by ``exp(−tIoU² / sigma)``;
    candidates falling below ``min_score`` are dropped. The only loop is over *kept* detections
    (at most ``max_detections``); each step decays all candidates of all videos in one tensor
    operation. Kept scores never increase along the selection (each pick was the maximum and
    scores only decay), so stopping after ``max_detections`` picks equals running Soft-NMS to
    the end and keeping the ``max_detections`` best.
    """
    B, K = scores.shape
    M = min(max_detections, K)
    neg_inf = torch.tensor(-math.inf, dtype=scores.dtype, device=scores.device)
    work = torch.where(valid & (scores >= min_score), scores, neg_inf)
    start, end = segs[..., 0], segs[..., 1]
    length = end - start
    rows = torch.arange(B, device=scores.device)
    keep_idx = torch.zeros((B, M), dtype=torch.long, device=scores.device)
    keep_score = torch.full((B, M), -math.inf, dtype=scores.dtype, device=scores.device)
    for j in range(M):
        best, bi = work.max(dim=1)  # ties → first index (candidates arrive score-sorted)
        if j % 8 == 0 and not bool(torch.isfinite(best).any()):  # sync only every 8 steps
            break
        keep_idx[:, j] = bi
        keep_score[:, j] = best
        work[rows, bi] = neg_inf
        bs, be = start[rows, bi].unsqueeze(1), end[rows, bi].unsqueeze(1)
        inter = (torch.minimum(end, be) - torch.maximum(start, bs)).clamp(min=0)
        union = length + (be - bs) - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
        hit = iou >= iou_thresh
        if class_aware:
            hit &= labels == labels[rows, bi].unsqueeze(1)
        work = torch.where(hit, work * torch.exp(-(iou * iou) / sigma), work)
        work = torch.where(work < min_score, neg_inf, work)
    return keep_idx, keep_score


def _soft_nms_numpy(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, sigma: float,
                    iou_thresh: float, min_score: float, max_detections: int,
                    class_aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """The same Soft-NMS for one video on the CPU, touching only the picked class per step.

    Candidates are grouped by class (stable, so score order and ties survive); each step takes
    the best of the per-class maxima, decays only that class's slice (one vectorised update)
    and refreshes that class's maximum: O(max_detections · (K / classes + classes)) work.
    ``segs`` ``(K, 2)``, ``scores``/``labels`` ``(K,)``, scores sorted descending. Returns kept
    indices (into the inputs) in selection order and their decayed scores.
    """
    K = len(scores)
    if K == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    group = labels if class_aware else np.zeros(K, dtype=np.int64)
    order = np.argsort(group, kind="stable")
    s, e = segs[order, 0].copy(), segs[order, 1].copy()
    length = e - s
    work = np.where(scores[order] >= min_score, scores[order], -np.inf)
    _, lo = np.unique(group[order], return_index=True)
    hi = np.append(lo[1:], K)
    cmax = np.array([work[a:b].max() for a, b in zip(lo, hi, strict=True)])
    carg = np.array([a + int(np.argmax(work[a:b])) for a, b in zip(lo, hi, strict=True)],
                    dtype=np.int64)
    keep_idx, keep_score = [], []
    for _ in range(min(max_detections, K)):
        c = int(np.argmax(cmax))
        best = cmax[c]
        if not np.isfinite(best):
            break
        tied = np.flatnonzero(cmax == best)
        if len(tied) > 1:  # equal scores in several classes: earliest candidate first
            c = int(tied[np.argmin(order[carg[tied]])])
        m = int(carg[c])
        keep_idx.append(order[m])
        keep_score.append(best)
        a, b = lo[c], hi[c]
        w = work[a:b]  # a view: updated in place
        w[m - a] = -np.inf
        inter = np.clip(np.minimum(e[a:b], e[m]) - np.maximum(s[a:b], s[m]), 0, None)
        union = length[a:b] + length[m] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        hit = iou >= iou_thresh
        w[hit] *= np.exp(-(iou[hit] ** 2) / sigma)
        w[w < min_score] = -np.inf
        j = int(np.argmax(w))
        cmax[c], carg[c] = w[j], a + j
    return (np.asarray(keep_idx, dtype=np.int64),
            np.asarray(keep_score, dtype=np.float64))


def soft_nms(segments: ArrayT, scores: ArrayT, labels: ArrayT, *, sigma: float,
             iou_thresh: float, min_score: float, max_detections: int,
             class_aware: bool = True) -> tuple[ArrayT, ArrayT, ArrayT]:
    """Gaussian Soft-NMS of one video's candidates (see :func:`_soft_nms_batched`).

    Args:
        segments: ``(K, 2)`` [start, end]; scores ``(K,)``; labels ``(K,)`` class indices
            (numpy arrays or torch tensors; the result has the same kind).
        sigma: Gaussian width (decay ``exp(−tIoU²/sigma)``).
        iou_thresh: overlaps below it are not decayed.
        min_score: candidates whose (decayed) score falls below it are dropped.
        max_detections: at most this many are kept.
        class_aware: only candidates of the same class decay each other.

    Returns:
        ``(segments, scores, labels)`` of the kept detections, by descending decayed score.
    """
    kw = dict(sigma=sigma, iou_thresh=iou_thresh, min_score=min_score,
              max_detections=max_detections, class_aware=class_aware)
    if isinstance(segments, torch.Tensor) and segments.device.type != "cpu":
        s = segments.to(torch.float64).reshape(-1, 2)
        sc = torch.as_tensor(scores, device=s.device).to(torch.float64).reshape(-1)
        lb = torch.as_tensor(labels, device=s.device).reshape(-1).long()
        _check_lengths(len(s), len(sc), len(lb))
        order = torch.argsort(sc, descending=True, stable=True)
        keep, ks = _soft_nms_batched(s[order][None], sc[order][None], lb[order][None],
                                     torch.ones(1, len(sc), dtype=torch.bool, device=s.device),
                                     **kw)
        alive = torch.isfinite(ks[0])
        idx = order[keep[0][alive]]
        return s[idx], ks[0][alive], lb[idx]  # type: ignore[return-value]
    as_torch = isinstance(segments, torch.Tensor)
    s = _np(segments, np.float64).reshape(-1, 2)
    sc = _np(scores, np.float64).reshape(-1)
    lb = _np(labels, np.int64).reshape(-1)
    _check_lengths(len(s), len(sc), len(lb))
    order = np.argsort(-sc, kind="stable")
    keep, ks = _soft_nms_numpy(s[order], sc[order], lb[order], **kw)
    idx = order[keep]
    out = (s[idx], ks, lb[idx])
    if as_torch:
        return tuple(torch.from_numpy(x) for x in out)  # type: ignore[return-value]
    return out  # type: ignore[return-value]


def _np(x: Any, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_lengths(n_seg: int, n_score: int, n_label: int) -> None:
    if not n_seg == n_score == n_label:
        raise ValueError(f"soft_nms: {n_seg} segments, {n_score} scores, {n_label} labels")


# --------------------------------------------------------------------------- video scores

def load_video_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """External video-level class scores for ActivityNet score fusion (§4.2) → {video: {label: p}}.

    Accepted layouts: ``{"class": [names], "results": {video: [p per class]}}`` (the CUHK
    classifier files used by BSN/BMN/G-TAD), or ``{"results": {video: {label: p}}}`` /
    ``{video: {label: p}}``. Scores must be finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video scores file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    classes = data.get("class")
    results = data.get("results", data if classes is None else None)
    if not isinstance(results, dict) or not results:
        raise DataError(f"{path}: expected {{'class': [names], 'results': {{video: [scores]}}}} "
                        "or {video: {label: score}}")
    if classes is not None and (not isinstance(classes, list)
                                or not all(isinstance(c, str) for c in classes)):
        raise DataError(f"{path}: 'class' must be a list of class names")
    out: dict[str, dict[str, float]] = {}
    for vid, v in results.items():
        if classes is not None:
            if not isinstance(v, list) or len(v) != len(classes):
                raise DataError(f"{path}: video {vid!r}: expected a list of {len(classes)} "
                                f"scores (one per 'class' entry), got {_short(v)}")
            pairs = zip(classes, v, strict=True)
        elif isinstance(v, dict):
            pairs = v.items()
        else:
            raise DataError(f"{path}: video {vid!r}: expected {{label: score}}, got {_short(v)}")
        row: dict[str, float] = {}
        for label, p in pairs:
            if not isinstance(p, int | float) or isinstance(p, bool) or not math.isfinite(p):
                raise DataError(f"{path}: video {vid!r}, class {label!r}: score must be a "
                                f"finite number, got {p!r}")
            row[label] = float(p)
        out[vid] = row
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) < 60 else text[:57] + "..."


@lru_cache(maxsize=4)
def _cached_video_scores(path: str, mtime: float) -> dict[str, dict[str, float]]:
    return load_video_scores(path)


def _video_row(video_scores: Mapping[str, Mapping[str, float]], vid: str) -> Mapping[str, float]:
    """The external scores of ``vid`` (ActivityNet ids may or may not carry a ``v_`` prefix)."""
    for key in (vid, f"v_{vid}", vid[2:] if vid.startswith("v_") else None):
        if key is not None and key in video_scores:
            return video_scores[key]
    raise DataError(f"video {vid!r} has no entry in the external video-level scores "
                    f"({len(video_scores)} videos there)")


def _fusion_weights(video_scores: Mapping[str, Mapping[str, float]], metas: Sequence[dict],
                    class_names: Sequence[str], topk: int) -> torch.Tensor:
    """``(B, K)`` weights: the external score of each video's ``topk`` best classes, else 0."""
    w = torch.zeros(len(metas), len(class_names), dtype=torch.float64)
    for b, meta in enumerate(metas):
        row = _video_row(video_scores, str(meta["video_id"]))
        vec = torch.tensor([row.get(c, 0.0) for c in class_names], dtype=torch.float64)
        top = torch.topk(vec, min(topk, len(class_names))).indices
        w[b, top] = vec[top]
    return w


# --------------------------------------------------------------------------- postprocess

def _meta_column(metas: Sequence[dict], key: str, default: float | None = None) -> torch.Tensor:
    vals = []
    for i, m in enumerate(metas):
        v = m.get(key, default)
        where = f"postprocess: metas[{i}] (video {m.get('video_id')!r})"
        if v is None:
            raise PredictionError(f"{where} lacks {key!r}")
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise PredictionError(f"{where}: {key!r} must be a number, got {v!r}") from None
        if not math.isfinite(x) or (key in ("fps", "stride", "window") and x <= 0):
            raise PredictionError(f"{where}: {key!r} must be a finite"
                                  f"{' positive' if key in ('fps', 'stride', 'window') else ''}"
                                  f" number, got {v!r}")
        vals.append(x)
    return torch.tensor(vals, dtype=torch.float64).unsqueeze(1)


def postprocess(output: ModelOutput, metas: list[dict], cfg: InferConfig,
                video_scores: dict | None = None, class_names: list[str] | None = None
                ) -> list[Detections]:
    """Detections of every video in a batch (module docstring for the steps).

    Args:
        output: the model's :class:`ModelOutput` (any device; ``B`` videos).
        metas: per video ``video_id``, ``fps``, ``stride``, ``window`` (frames), ``duration``
            (seconds; ≤ 0 or missing → no clipping) and ``offset`` (snippets from the video
            start to the first feature of this input; 0 at inference, default 0).
        cfg: the ``infer`` section of the config.
        video_scores: external video-level scores (:func:`load_video_scores`); ``None`` →
            loaded from ``cfg.video_scores`` when that is set, else no fusion.
        class_names: class names, needed for fusion (to align external labels).

    With fusion, a multi-class model's confidence of class c is multiplied by the video's
    external score of c, keeping only the video's ``cfg.video_topk`` best external classes; a
    class-agnostic model (one class) runs Soft-NMS on its proposals and then gives each kept
    proposal the ``video_topk`` best classes, score = proposal score × class score.
    """
    B, N, C = output.cls_logits.shape
    if len(metas) != B:
        raise PredictionError(f"postprocess: {len(metas)} metas for a batch of {B} videos")
    device = output.cls_logits.device
    if video_scores is None and cfg.video_scores:
        p = Path(cfg.video_scores)
        if not p.is_file():
            raise DataError(f"infer.video_scores: file not found: {p}")
        video_scores = _cached_video_scores(str(p), p.stat().st_mtime)
    weights = None
    if video_scores is not None:
        if class_names is None:
            raise ConfigError("video-level score fusion (infer.video_scores) needs class_names")
        if C not in (1, len(class_names)):
            raise ConfigError(f"video-level score fusion: the model has {C} classes but "
                              f"{len(class_names)} class names were given")
        weights = _fusion_weights(video_scores, metas, class_names, cfg.video_topk).to(device)

    conf = confidence(output.cls_logits.to(torch.float64), output.match_logits, cfg.confidence)
    if weights is not None and C > 1:
        conf = conf * weights.unsqueeze(1)
    valid = output.mask.to(device).bool().unsqueeze(-1) & (conf > cfg.pre_nms_thresh)
    flat = torch.where(valid, conf, torch.full_like(conf, -math.inf)).reshape(B, N * C)
    k = min(cfg.pre_nms_topk, N * C)
    top, idx = flat.topk(k, dim=1)  # sorted, descending
    keep = torch.isfinite(top)
    point, label = idx // C, idx % C

    fps = _meta_column(metas, "fps").to(device)
    stride = _meta_column(metas, "stride").to(device)
    window = _meta_column(metas, "window").to(device)
    offset = _meta_column(metas, "offset", 0.0).to(device)
    duration = _meta_column(metas, "duration", 0.0).to(device)
    pts = output.points.to(device=device, dtype=torch.float64)[point] + offset
    offs = output.offsets.to(device).gather(1, point.unsqueeze(-1).expand(B, k, 2))
    segs = decode_segments(pts, offs, fps=fps, stride=stride, window=window)
    limit = torch.where(duration > 0, duration, torch.full_like(duration, math.inf))
    segs = torch.minimum(segs.clamp(min=0.0), limit.unsqueeze(-1))
    keep &= (segs[..., 1] - segs[..., 0]) > cfg.min_duration

    per_video = _nms_per_video(segs, top, label, keep, cfg, batched=device.type != "cpu")
    w_cpu = weights.cpu().numpy() if weights is not None else None
    dets = []
    for b, (meta, (s, sc, lb)) in enumerate(zip(metas, per_video, strict=True)):
        if w_cpu is not None and C == 1:  # class-agnostic model: class_aware makes no difference
            s, sc, lb = _expand_agnostic(s, sc, w_cpu[b], cfg.video_topk, cfg.max_detections)
        dets.append(Detections(str(meta["video_id"]), s.astype(np.float64).reshape(-1, 2),
                               sc.astype(np.float64), lb.astype(np.int64)))
    return dets


def _nms_per_video(segs: torch.Tensor, top: torch.Tensor, label: torch.Tensor,
                   keep: torch.Tensor, cfg: InferConfig, *, batched: bool
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Soft-NMS of each video's candidates ``(B, K)`` → [(segments, scores, labels)] (numpy).

    ``batched``: one torch kernel for all videos (accelerators); otherwise the per-video numpy
    kernel, which touches only the picked class per step (far fewer ops on a CPU).
    """
    nms = dict(sigma=cfg.nms_sigma, iou_thresh=cfg.nms_iou_thresh, min_score=cfg.min_score,
               max_detections=cfg.max_detections, class_aware=cfg.class_aware)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if not batched:
        segs_np, top_np, label_np, keep_np = (x.cpu().numpy() for x in (segs, top, label, keep))
        for b in range(len(top_np)):
            cand = np.flatnonzero(keep_np[b])  # still in descending score order
            kidx, ks = _soft_nms_numpy(segs_np[b, cand], top_np[b, cand], label_np[b, cand], **nms)
            out.append((segs_np[b, cand[kidx]], ks, label_np[b, cand[kidx]]))
        return out
    kidx, kscore = _soft_nms_batched(segs, top, label, keep, **nms)
    out_segs = segs.gather(1, kidx.unsqueeze(-1).expand(-1, -1, 2)).cpu().numpy()
    out_labels = label.gather(1, kidx).cpu().numpy()
    out_scores = kscore.cpu().numpy()
    for b in range(len(out_scores)):
        alive = np.isfinite(out_scores[b])
        out.append((out_segs[b][alive], out_scores[b][alive], out_labels[b][alive]))
    return out


def _expand_agnostic(segs: np.ndarray, scores: np.ndarray, weights: np.ndarray, topk: int,
                     max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-agnostic proposals × the video's ``topk`` external classes (§4.2 fusion)."""
    cls = np.argsort(-weights, kind="stable")[:topk]
    cls = cls[weights[cls] > 0]
    s = np.repeat(segs, len(cls), axis=0)
    sc = (scores[:, None] * weights[cls][None, :]).reshape(-1)
    lb = np.tile(cls, len(scores))
    order = np.argsort(-sc, kind="stable")[:max_det]
    return s[order], sc[order], lb[order]


# --------------------------------------------------------------------------- results JSON

def to_results_json(dets: list[Detections], class_names: list[str],
                    external_data: dict | None = None) -> dict:
    """The ActivityNet results layout:
    ``{"version": "amnet", "results": {video: [{"label", "score", "segment"}]},
    "external_data": {...}}`` (seconds, full float precision)."""
    results: dict[str, list[dict[str, Any]]] = {}
    for d in dets:
        if d.video_id in results:
            raise PredictionError(f"to_results_json: video {d.video_id!r} appears twice; merge "
                                  "its detections (and re-run NMS) first")
        lb = np.asarray(d.labels, dtype=np.int64)
        if lb.size and (lb.min() < 0 or lb.max() >= len(class_names)):
            raise PredictionError(f"to_results_json: video {d.video_id!r} has label index "
                                  f"{int(lb.max() if lb.max() >= len(class_names) else lb.min())}"
                                  f" outside the {len(class_names)} class names")
        segs = np.asarray(d.segments, dtype=np.float64).reshape(-1, 2).tolist()
        scores = np.asarray(d.scores, dtype=np.float64).tolist()
        results[d.video_id] = [{"label": class_names[c], "score": s, "segment": seg}
                               for c, s, seg in zip(lb.tolist(), scores, segs, strict=True)]
    return {"version": "amnet", "results": results,
            "external_data": external_data or {"used": False, "details": ""}}
