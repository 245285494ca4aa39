"""Model registry: register a run's model and move ``champion`` only when it wins.

The rule (README "Model registry"): every call registers the run's logged model as a new
version of ``cfg.tracking.registered_model``. The alias ``cfg.tracking.champion_alias`` moves
to it only if

1. there is no champion yet, or
2. the champion was scored on the **same test set** (equal ``amnet.test_fingerprint`` run
   tags: same ground truth, same feature manifest entries, same tIoU thresholds) and the new
   version's ``test/average_mAP`` is **strictly higher**.

A champion scored on another test set is never replaced automatically (the numbers are not
comparable); ``amnet promote --force`` does it on purpose. The decision, its reason and both
scores are written as tags on the new version (``promotion.*``), so the registry UI shows why.

Pipeline stage: ``python -m workflows.register -p params/default.yaml --run-file
outputs/train/mlflow_run.json --out outputs/register.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any

from amnet.io import atomic_write_text
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

log = logging.getLogger(__name__)

METRIC = "test/average_mAP"


def _run_score(client: Any, run_id: str, metric: str) -> tuple[float | None, str]:
    run = client.get_run(run_id)
    from workflows.tracking import TAG_FINGERPRINT

    return run.data.metrics.get(metric), run.data.tags.get(TAG_FINGERPRINT, "")


def _stand_in(cfg: WorkflowConfig, run_id: str, metric: str) -> Any:
    """The run ``amnet evaluate`` logged for ``run_id`` when that run is not in this store
    (a clone restored with ``dvc pull``): the newest one with a model and ``metric``."""
    import mlflow

    from workflows import tracking

    runs = [r for r in tracking.stand_in_runs(cfg, run_id)
            if metric in r.data.metrics and r.data.tags.get(tracking.TAG_MODEL_URI)]
    if not runs:
        raise tracking.TrackingError(
            f"run {run_id} is not in the tracking store {mlflow.get_tracking_uri()}, and no "
            f"run stands in for it: run `amnet evaluate` (it logs the evaluation and the model "
            f"to a new run tagged {tracking.TAG_SOURCE_RUN}={run_id}), or retrain "
            f"(`dvc repro -f train`)")
    log.warning("run %s is not in the tracking store %s; registering run %s, which `amnet "
                "evaluate` logged for it (tag %s)", run_id, mlflow.get_tracking_uri(),
                runs[0].info.run_id, tracking.TAG_SOURCE_RUN)
    return runs[0]


def promote(cfg: WorkflowConfig, run_id: str, *, metric: str = METRIC, force: bool = False,
            model_uri: str | None = None) -> dict[str, Any]:
    """Register ``run_id``'s model; move the champion alias if it wins (module docstring).

    A ``run_id`` this store does not hold is replaced by the run ``amnet evaluate`` logged
    for it (tag ``amnet.source_run_id``; then the result also has ``source_run_id``).

    Returns ``{"model", "version", "run_id", "decision" ("champion" | "rejected"), "reason",
    "score", "champion_version", "champion_score", "test_fingerprint"}``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from workflows import tracking

    tracking.configure(cfg)
    client = MlflowClient()
    name, alias = cfg.tracking.registered_model, cfg.tracking.champion_alias
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = _stand_in(cfg, run_id, metric)
    source_run_id = run.data.tags.get(tracking.TAG_SOURCE_RUN)
    run_id = run.info.run_id
    score = run.data.metrics.get(metric)
    fingerprint = run.data.tags.get(tracking.TAG_FINGERPRINT, "")
    if score is None or not fingerprint:
        raise tracking.TrackingError(
            f"run {run_id} has no {metric!r} metric or {tracking.TAG_FINGERPRINT!r} tag: "
            f"evaluate it on the test set first (`amnet evaluate`)")
    model_uri = model_uri or run.data.tags.get(tracking.TAG_MODEL_URI)
    if not model_uri:
        raise tracking.TrackingError(f"run {run_id} has no logged model (tag "
                                     f"{tracking.TAG_MODEL_URI!r}); it was trained without "
                                     f"tracking.log_model")

    champion = None
    with contextlib.suppress(MlflowException):  # no registered model or no alias yet
        champion = client.get_model_version_by_alias(name, alias)
    mv = mlflow.register_model(model_uri, name, tags={"run_id": run_id, "metric": metric,
                                                      "score": f"{score:.6f}",
                                                      "test_fingerprint": fingerprint})
    result: dict[str, Any] = {"model": name, "version": int(mv.version), "run_id": run_id,
                              "metric": metric, "score": score, "test_fingerprint": fingerprint,
                              "champion_version": None, "champion_score": None}
    if source_run_id:
        result["source_run_id"] = source_run_id
    if champion is None:
        decision, reason = "champion", f"no '{alias}' version existed"
    else:
        champ_score, champ_fp = _run_score(client, champion.tags.get("run_id") or champion.run_id,
                                          metric)
        result["champion_version"] = int(champion.version)
        result["champion_score"] = champ_score
        if force:
            decision, reason = "champion", f"forced over version {champion.version}"
        elif champ_fp != fingerprint:
            decision = "rejected"
            reason = (f"version {champion.version} was scored on another test set "
                      f"({champ_fp or 'unknown'} != {fingerprint}); not comparable, "
                      f"use `amnet promote --force`")
        elif champ_score is None:
            decision, reason = "champion", f"version {champion.version} has no {metric}"
        elif score > champ_score:
            decision = "champion"
            reason = f"{metric} {score:.4f} > {champ_score:.4f} of version {champion.version}"
        else:
            decision = "rejected"
            reason = (f"{metric} {score:.4f} does not beat {champ_score:.4f} of version "
                      f"{champion.version}")
    if decision == "champion":
        client.set_registered_model_alias(name, alias, mv.version)
    result.update(decision=decision, reason=reason)
    for key in ("decision", "reason", "champion_version", "champion_score"):
        client.set_model_version_tag(name, mv.version, f"promotion.{key}", str(result[key]))
    client.set_registered_model_tag(
        name, "promotion_rule",
        f"'{alias}' moves to a new version only if its {metric} is strictly higher than the "
        f"current {alias}'s on the same test set (amnet.test_fingerprint)")
    log.info("%s v%s: %s (%s)", name, mv.version, decision, reason)
    return result


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--run-id", help="MLflow run whose model to register")
    src.add_argument("--run-file", default="outputs/train/mlflow_run.json",
                     help="JSON with a run_id, written by `amnet train` (default: %(default)s)")
    parser.add_argument("--metric", default=METRIC, help="higher wins (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="move the champion alias even if the new version does not win")
    parser.add_argument("--out", "--json", dest="out", metavar="OUT",
                        help="write the decision as JSON here (the register stage)")


def run(args: argparse.Namespace) -> int:
    from workflows.tracking import read_run_id

    cfg = load_config(args.params, args.overrides)
    run_id = args.run_id or read_run_id(args.run_file, required=True, hint=" or give --run-id")
    result = promote(cfg, run_id, metric=args.metric, force=args.force)
    text = json.dumps(result, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["promote", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
