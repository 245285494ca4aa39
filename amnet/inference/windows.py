"""Inference cost linear in video length: overlapping windows, centre regions, one NMS.

With global attention (``model.attention_window=0``, the default) every level's
self-attention and the group cross-attention span the whole input, so one forward pass over a
T-snippet video costs O(T²) (with a window it is already linear in T, and windows only bound
the memory). With ``infer.window`` = W > 0, a video longer
than W is cut into windows of W snippets that overlap by ``infer.window_overlap`` = O; each
window runs through the model on its own (cost O(T/(W−O) · W²), linear in T), and each point
of the video is taken from exactly one window, the one whose *centre region* holds it (the
overlap is split in the middle, so every kept point saw at least O/2 snippets of context on
both sides). The kept points of all windows are concatenated into one output per video, which
:func:`amnet.inference.postprocess` then scores, decodes and Soft-NMSes as one video.

A video of at most W snippets (and every video when W = 0, the default) takes the
whole-video path unchanged. Window starts are multiples of the pyramid's largest stride, so a
window's points lie on the whole video's point grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from amnet.config import InferConfig
from amnet.errors import ConfigError
from amnet.inference.postprocess import postprocess
from amnet.inference.results import Detections
from amnet.model.output import ModelOutput

__all__ = ["infer_batch", "length_order", "window_starts"]


def window_starts(length: int, window: int, overlap: int, align: int) -> list[int]:
    """Starts of the windows covering ``[0, length)``: steps of ``window − overlap`` rounded
    down to ``align``; the last window ends at (or, after alignment, just past) ``length``."""
    if window <= 0 or length <= window:
        return [0]
    step = (window - overlap) // align * align
    if step <= 0:
        raise ConfigError(f"infer.window={window} with infer.window_overlap={overlap}: the "
                          f"step between windows must be at least the model's largest stride "
                          f"({align} snippets)")
    starts = list(range(0, length - window, step))
    last = -(-(length - window) // align) * align  # aligned, so it may end past the video
    if last > starts[-1]:
        starts.append(last)
    return starts


def _merge_windows(outs: Sequence[ModelOutput], starts: Sequence[int], window: int
                   ) -> ModelOutput:
    """One video's output from its windows' (``B = 1`` each): window k keeps the points in
    ``[b_k, b_{k+1})``, ``b_k`` the middle of the overlap of windows k−1 and k (absolute
    snippets); positions become absolute."""
    bounds = [float("-inf")] + [(s + p + window) / 2 for p, s in pairwise(starts)]
    bounds.append(float("inf"))
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in
                                            ("cls", "off", "match", "pts", "str", "lvl", "mask")}
    for k, (o, s) in enumerate(zip(outs, starts, strict=True)):
        pts = o.points.to(torch.float64) + s
        keep = (pts >= bounds[k]) & (pts < bounds[k + 1])
        parts["cls"].append(o.cls_logits[:, keep])
        parts["off"].append(o.offsets[:, keep])
        if o.match_logits is not None:
            parts["match"].append(o.match_logits[:, keep])
        parts["pts"].append(o.points[keep] + s)
        parts["str"].append(o.strides[keep])
        parts["lvl"].append(o.level_ids[keep])
        parts["mask"].append(o.mask[:, keep])
    return ModelOutput(
        cls_logits=torch.cat(parts["cls"], 1), offsets=torch.cat(parts["off"], 1),
        match_logits=torch.cat(parts["match"], 1) if parts["match"] else None,
        points=torch.cat(parts["pts"]), strides=torch.cat(parts["str"]),
        level_ids=torch.cat(parts["lvl"]), mask=torch.cat(parts["mask"], 1),
        level_lengths=[int(sum(len(p) for p in parts["pts"]))])


def _windowed_output(model: nn.Module, feats: torch.Tensor, mask: torch.Tensor, length: int,
                     cfg: InferConfig, align: int, batch: int) -> ModelOutput:
    """The merged output of one video ``feats`` ``(C, T)`` run window by window."""
    W = cfg.window
    starts = window_starts(length, W, cfg.window_overlap, align)
    chunks, masks = [], []
    for s in starts:
        f, m = feats[:, s:s + W], mask[s:s + W]
        pad = W - f.shape[1]
        if pad:  # the aligned last window may run past the video: padded, masked
            f = torch.nn.functional.pad(f, (0, pad))
            m = torch.nn.functional.pad(m, (0, pad), value=False)
        chunks.append(f)
        masks.append(m)
    outs: list[ModelOutput] = []
    for i in range(0, len(starts), batch):
        out = model(torch.stack(chunks[i:i + batch]), torch.stack(masks[i:i + batch]))
        outs += [_row(out, b) for b in range(out.cls_logits.shape[0])]
    return _merge_windows(outs, starts, W)


def _row(out: ModelOutput, b: int) -> ModelOutput:
    return ModelOutput(
        cls_logits=out.cls_logits[b:b + 1], offsets=out.offsets[b:b + 1],
        match_logits=None if out.match_logits is None else out.match_logits[b:b + 1],
        points=out.points, strides=out.strides, level_ids=out.level_ids,
        mask=out.mask[b:b + 1], level_lengths=out.level_lengths)


@torch.no_grad()
def infer_batch(model: nn.Module, feats: torch.Tensor, mask: torch.Tensor, metas: list[dict],
                cfg: InferConfig, *, class_names: list[str] | None = None,
                align: int = 1, window_batch: int = 4) -> list[Detections]:
    """Detections of a batch of full-length videos (``feats`` ``(B, C, T)``, ``mask``
    ``(B, T)``), windowed where a video is longer than ``cfg.window`` (module docstring).

    ``align``: the model's largest stride in snippets (``2 ** (fpn_levels − 1)``);
    ``window_batch``: windows per forward pass.
    """
    lengths = mask.sum(dim=1).tolist()
    if cfg.window <= 0 or max(lengths) <= cfg.window:
        return postprocess(model(feats, mask), metas, cfg, class_names=class_names)
    if cfg.window % align:
        raise ConfigError(f"infer.window={cfg.window} must be a multiple of the model's "
                          f"largest stride ({align} snippets)")
    dets: list[Detections] = []
    for b, meta in enumerate(metas):
        n = int(lengths[b])
        if n <= cfg.window:
            t = -(-n // align) * align
            out = model(feats[b:b + 1, :, :t], mask[b:b + 1, :t])
        else:
            out = _windowed_output(model, feats[b], mask[b], n, cfg, align, window_batch)
        dets += postprocess(out, [meta], cfg, class_names=class_names)
    return dets


def length_order(dataset: Any) -> list[int] | None:
    """Indices of ``dataset`` by (expected) length, so that evaluation batches hold videos of
    similar length instead of padding every one to the longest; ``None`` when the dataset
    does not say its videos' durations."""
    videos = getattr(dataset, "videos", None)
    try:
        keys = [float(v.duration) * float(v.fps) for v in videos]  # ∝ snippets
    except (TypeError, AttributeError, ValueError):
        return None
    return sorted(range(len(keys)), key=keys.__getitem__)
