"""External video-level class scores (ActivityNet score fusion, §4.2): the score-file parser,
its cache, and the fusion weights / class expansion that :func:`postprocess` applies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from amnet.errors import DataError
from amnet.io import read_json

__all__ = ["load_video_scores"]


def load_video_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """External video-level class scores for ActivityNet score fusion (§4.2) → {video: {label: p}}.

    Accepted layouts: ``{"class": [names], "results": {video: [p per class]}}`` (the CUHK
    classifier files used by BSN/BMN/G-TAD), or ``{"results": {video: {label: p}}}`` /
    ``{video: {label: p}}``. Scores must be finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video scores file not found: {path}")
    data = read_json(path)
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


