"""One video's detections in seconds, and the ActivityNet results JSON built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from amnet.errors import PredictionError

__all__ = ["Detections", "to_results_json"]


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
