"""The matrix's metrics file: per row, the per-seed scores of its cells and their mean ± std.

``metrics/matrix.json`` (a DVC metrics file, what ``amnet report`` and ``register`` read)::

    {"preset": "default", "seeds": [0, 1, 2], "epochs": 20, "failed_cells": 0,
     "rows": {"full": {"label": …, "tables": ["table2", "table4"],
                       "AME": true, "GAM": true, "MS": true, "confidence": "sigmoid*tanh",
                       "test/average_mAP": mean, "test/average_mAP_std": std,
                       "val/average_mAP": mean, "val/average_mAP_std": std, "n_seeds": 3,
                       "seeds": {"0": {"cell": key, "status": "ok", "error": "",
                                       "test/mAP_0.3": …, "val/average_mAP": …}, …}}}}

Test scores are for reporting; ``val/…`` (the held-out validation split) is what a choice,
such as the champion gate, may use.
"""

from __future__ import annotations

from typing import Any

from amnet.evaluation.stats import mean_std
from workflows.matrix.cell import STATUS_OK
from workflows.matrix.spec import Spec

__all__ = ["SUMMARY_KEYS", "summarise"]

SUMMARY_KEYS = ("test/average_mAP", "val/average_mAP")


def _flags(cfg: Any) -> dict[str, Any]:
    m = cfg.model
    return {"AME": m.ame, "GAM": m.gam and m.self_attention, "SA": m.self_attention,
            "MS": m.matching_head, "confidence": cfg.infer.confidence,
            "matching": cfg.loss.matching, "lambda1": cfg.loss.lambda1,
            "lambda2": cfg.loss.lambda2, "gam_depth": m.gam_depth}


def summarise(spec: Spec, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The metrics file's content (module docstring) from every cell's result."""
    rows: dict[str, Any] = {}
    for name in spec.rows:
        row = spec.file.rows[name]
        key0 = spec.by_row_seed[(name, spec.seeds[0])]
        entry: dict[str, Any] = {"label": row.label, "tables": list(row.tables),
                                 **_flags(spec.cell(key0).cfg)}
        seeds: dict[str, Any] = {}
        for seed in spec.seeds:
            key = spec.by_row_seed[(name, seed)]
            res = results.get(key) or {"status": "missing", "error": "not run", "metrics": {}}
            seeds[str(seed)] = {"cell": key, "status": res["status"],
                                "error": res.get("error", ""), **(res.get("metrics") or {})}
        ok = [v for v in seeds.values() if v["status"] == STATUS_OK]
        for k in SUMMARY_KEYS:
            vals = [v[k] for v in ok if k in v]
            if vals:
                ms = mean_std(vals)
                entry[k] = ms.mean
                entry[f"{k}_std"] = None if ms.n < 2 else ms.std
        entry["n_seeds"] = len(ok)
        entry["seeds"] = seeds
        rows[name] = entry
    cfg = spec.cells[0].cfg
    failed = sum(r.get("status") != STATUS_OK for r in results.values())
    return {"preset": spec.preset, "seeds": list(spec.seeds), "epochs": cfg.train.epochs,
            "confidence": spec.file.settings.confidence,
            "failed_cells": failed, "rows": rows}
