"""From a batch's :class:`ModelOutput` to each video's :class:`Detections` (steps in
:mod:`amnet.inference`), with Soft-NMS per video."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from amnet.config import InferConfig
from amnet.errors import ConfigError, DataError, PredictionError
from amnet.inference.decode import confidence, decode_segments
from amnet.inference.fusion import _cached_video_scores, _expand_agnostic, _fusion_weights
from amnet.inference.nms import _soft_nms_batched, _soft_nms_cpu
from amnet.inference.results import Detections
from amnet.inference.voting import vote_boundaries
from amnet.model.output import ModelOutput

__all__ = ["postprocess"]


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
    B, _, C = output.cls_logits.shape
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
    scored = torch.where(valid, conf, torch.full_like(conf, -math.inf))
    top, idx = _pre_nms_topk(scored, output.level_ids, cfg)
    k = top.shape[1]
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

    per_video = _nms_per_video(segs, top, label, keep, cfg, batched=device.type == "cuda")
    w_cpu = weights.cpu().numpy() if weights is not None else None
    dets = []
    for b, (meta, (s, sc, lb)) in enumerate(zip(metas, per_video, strict=True)):
        if w_cpu is not None and C == 1:  # class-agnostic model: class_aware makes no difference
            s, sc, lb = _expand_agnostic(s, sc, w_cpu[b], cfg.video_topk, cfg.max_detections)
        dets.append(Detections(str(meta["video_id"]), s.astype(np.float64).reshape(-1, 2),
                               sc.astype(np.float64), lb.astype(np.int64)))
    return dets


def _pre_nms_topk(scored: torch.Tensor, level_ids: torch.Tensor, cfg: InferConfig
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-NMS candidates ``(B, K)`` scores (descending) and flat ``point · C + class`` indices.

    ``cfg.topk_per_level == 0``: one top-``pre_nms_topk`` over every level's (point, class);
    otherwise the best ``topk_per_level`` of each pyramid level (by ``level_ids``, so windowed
    outputs whose levels interleave work too), merged and re-sorted, so the dense fine levels
    cannot crowd the long actions of the coarse ones out.
    """
    B, N, C = scored.shape
    flat = scored.reshape(B, N * C)
    if cfg.topk_per_level <= 0:
        return flat.topk(min(cfg.pre_nms_topk, N * C), dim=1)  # sorted, descending
    level_ids = level_ids.to(scored.device)
    tops, idxs = [], []
    for lvl in torch.unique(level_ids).tolist():
        on = (level_ids == lvl)[None, :, None].expand_as(scored).reshape(B, N * C)
        k = min(cfg.topk_per_level, int(on[0].sum()))
        t, i = torch.where(on, flat, torch.full_like(flat, -math.inf)).topk(k, dim=1)
        tops.append(t)
        idxs.append(i)
    top, order = torch.cat(tops, 1).sort(dim=1, descending=True, stable=True)
    return top, torch.cat(idxs, 1).gather(1, order)


def _nms_per_video(segs: torch.Tensor, top: torch.Tensor, label: torch.Tensor,
                   keep: torch.Tensor, cfg: InferConfig, *, batched: bool
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Soft-NMS of each video's candidates ``(B, K)`` → [(segments, scores, labels)] (numpy),
    then boundary voting (:mod:`amnet.inference.voting`) when ``cfg.voting_thresh`` > 0.

    ``batched``: one torch kernel for all videos (accelerators); otherwise the per-video compiled
    kernel, which touches only the picked class per step (far fewer ops on a CPU).
    """
    nms = dict(sigma=cfg.nms_sigma, iou_thresh=cfg.nms_iou_thresh, min_score=cfg.min_score,
               max_detections=cfg.max_detections, class_aware=cfg.class_aware)
    segs_np, top_np, label_np, keep_np = (x.cpu().numpy() for x in (segs, top, label, keep))
    if batched:
        kidx, kscore = (x.cpu().numpy() for x in _soft_nms_batched(segs, top, label, keep, **nms))
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for b in range(len(top_np)):
        cand = np.flatnonzero(keep_np[b])  # still in descending score order
        if batched:
            alive = np.isfinite(kscore[b])
            picked, scores = kidx[b][alive], kscore[b][alive]
        else:
            sub, scores = _soft_nms_cpu(segs_np[b, cand], top_np[b, cand], label_np[b, cand],
                                        **nms)
            picked = cand[sub]
        kept, labels = segs_np[b, picked], label_np[b, picked]
        if cfg.voting_thresh > 0:
            kept = vote_boundaries(kept, labels, segs_np[b, cand], top_np[b, cand],
                                   label_np[b, cand], cfg.voting_thresh,
                                   class_aware=cfg.class_aware)
        out.append((kept, scores, labels))
    return out
