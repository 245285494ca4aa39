"""A finished sweep's records: the Optuna study rebuilt from the trial table, its plots, the
parent run's summary and the best-params file ``amnet train -p`` accepts."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amnet.io import atomic_write_text
from workflows.config import WorkflowConfig, load_config
from workflows.sweep.space import METRIC, Dim, SweepError

log = logging.getLogger(__name__)

__all__ = ["optuna_study", "summarise", "write_best_params"]


def optuna_study(rows: list[dict[str, Any]], dims: Sequence[Dim]) -> Any:
    """An Optuna study rebuilt from the trial table (for Optuna's plots).

    OptunaSearch keeps its study in a private attribute and a restored sweep has none, so the
    study is rebuilt with ``create_study`` + ``add_trial`` in trial order.
    """
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    dists = {d.key: (IntDistribution(int(d.low), int(d.high)) if d.integer
                     else FloatDistribution(d.low, d.high, log=d.log))
             for d in dims if d.low < d.high}
    study = optuna.create_study(direction="maximize", study_name="amnet-sweep")
    for row in rows:
        params = {k: row[k] for k in dists if row.get(k) is not None}
        value = row[METRIC]
        ok = row["status"] != "failed" and value == value  # not NaN
        study.add_trial(create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=float(value) if ok else None,
            state=TrialState.COMPLETE if ok else TrialState.FAIL,
            user_attrs={"trial": row["trial"], "status": row["status"]}))
    return study


def _plots(study: Any, out: Path) -> list[Path]:
    """Optuna's optimisation-history and parameter-importance plots (matplotlib backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    paths = []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on the matplotlib API
        plots = [("optimization_history.png", ovm.plot_optimization_history)]
        if len(done) >= 2:
            plots.append(("param_importances.png", ovm.plot_param_importances))
        for name, fn in plots:
            try:
                ax = fn(study)
            except (ValueError, RuntimeError) as e:  # e.g. importances of constant params
                log.warning("Optuna %s plot skipped: %s", name, e)
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            paths.append(out / name)
    return paths


def write_best_params(path: Path, best: dict[str, Any], *, params_path: str | None,
                      comment: str) -> Path:
    """A params file ``amnet train -p`` accepts: ``base:`` the sweep's params file (so its
    data / ray / train settings carry over; its ``sweep:`` keys are unused by training) plus
    the chosen keys. Without a params file, the chosen keys on the built-in defaults."""
    import yaml

    nested: dict[str, Any] = {}
    for key, value in best.items():
        section, leaf = key.split(".", 1)
        nested.setdefault(section, {})[leaf] = value
    doc: dict[str, Any] = {}
    if params_path is not None:
        doc["base"] = os.path.relpath(Path(params_path).resolve(), path.resolve().parent)
    doc.update(nested)
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    atomic_write_text(path, text + yaml.safe_dump(doc, sort_keys=False))
    load_config(path)  # what we wrote must load (fails loudly here, not in the train stage)
    return path


def summarise(cfg: WorkflowConfig, rows: list[dict[str, Any]], dims: Sequence[Dim], name: str,
              parent_id: str, params_path: str | None, wall_s: float) -> dict[str, Any]:
    """Parent-run records (in the active run) + best params file; the SweepResult fields."""
    import mlflow
    import pandas as pd

    table = pd.DataFrame(rows)
    n_failed = int((table["status"] == "failed").sum()) if len(table) else 0
    interrupted = len(table) < cfg.sweep.num_samples or (table["status"] == "unfinished").any()
    ok = table[(table["status"] != "failed") & table[METRIC].notna()] if len(table) else table
    mlflow.log_metrics({"sweep/trials": float(len(table)), "sweep/failed": float(n_failed),
                        "sweep/wall_s": wall_s})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        mlflow.log_table(table.astype({c: str for c in ("trial", "status", "error")}),
                         "sweep/trials.json")
        table.to_csv(out / "trials.csv", index=False)
        mlflow.log_artifact(str(out / "trials.csv"), "sweep")
        if len(table):
            for p in _plots(optuna_study(rows, dims), out):
                mlflow.log_artifact(str(p), "sweep")
    if interrupted:
        log.warning("sweep %s was interrupted (%d of %d trials finished); continue it with "
                    "--resume %s", name, int((table["status"] != "unfinished").sum())
                    if len(table) else 0, cfg.sweep.num_samples, name)
    if ok.empty:
        if interrupted:
            return {"trials": table, "best": None, "best_metric": None,
                    "best_params_path": None, "interrupted": True}
        raise SweepError(f"sweep {name}: all {len(table)} trials failed; first error: "
                         f"{table['error'].iloc[0] if len(table) else 'none'}")
    best_row = ok.loc[ok[METRIC].idxmax()]
    best = {d.key: _plain(best_row[d.key], d) for d in dims}
    best_metric = float(best_row[METRIC])
    best_path = None
    if not interrupted:  # params are immutable in MLflow: log the best once, when final
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best/{METRIC}", best_metric)
        mlflow.set_tag("amnet.best_trial", str(best_row["trial"]))
        best_path = Path(cfg.sweep.best_params_out)
        comment = (f"Best of {len(table)} trials of sweep {name} ({n_failed} failed): "
                   f"{METRIC}={best_metric:.4f} after {int(best_row['epochs'])} epochs "
                   f"({best_row['trial']}).\nMLflow parent run {parent_id}. Written by "
                   "`amnet sweep`; train with: amnet train -p " + str(best_path))
        write_best_params(best_path, best, params_path=params_path, comment=comment)
        mlflow.log_artifact(str(best_path), "sweep")
        log.info("best %s=%.4f with %s -> %s", METRIC, best_metric, best, best_path)
    return {"trials": table, "best": best, "best_metric": best_metric,
            "best_params_path": best_path, "interrupted": bool(interrupted)}


def _plain(v: Any, dim: Dim) -> int | float:
    """The sampled value in its dimension's type: a pandas column holding a failed trial's
    missing value turns an integer key (``model.gam_depth``) into float, which the config
    rejects."""
    v = v.item() if hasattr(v, "item") else v
    return round(v) if dim.integer else float(v)
