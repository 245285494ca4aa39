"""Helpers for the data tests: small on-disk feature sets in the public release layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"
THUMOS_JSON = SHARED / "thumos14.json"
REAL_I3D = SHARED / "real_i3d"


def video(subset: str = "Validation", duration: float = 20.0, fps: float = 10.0,
          anns: list[tuple[str, float, float]] | None = None) -> dict[str, Any]:
    anns = [("Jump", 2.0, 6.0), ("Throw", 10.0, 14.0)] if anns is None else anns
    return {"subset": subset, "duration": duration, "fps": fps,
            "annotations": [{"label": lab, "segment": [s, e]} for lab, s, e in anns]}


def write_set(root: Path, db: dict[str, Any], *, dim: int = 8,
              feats: dict[str, Any] | None = None) -> Path:
    """``annotations.json`` from ``db`` + one (T, dim) .npy per video (T from duration, fps 10,
    stride 2, window 4 → T = (10·duration − 4)//2 + 1), unless ``feats`` gives the array."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps({"database": db}))
    rng = np.random.default_rng(0)
    for vid, v in db.items():
        arr = (feats or {}).get(vid)
        if arr is None:
            t = (round(v["duration"] * v.get("fps", 10.0)) - 4) // 2 + 1
            arr = rng.random((t, dim), dtype=np.float32)
        np.save(root / f"{vid}.npy", arr)
    return root
