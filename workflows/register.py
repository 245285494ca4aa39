"""Model registry: register a run's model; move ``champion`` only on evidence.

The rule (README "Model registry", issue 11 item 5): every call registers the run's logged
model as a new version of ``cfg.tracking.registered_model``. The evidence is its
configuration's **validation** average mAP per seed: the ablation matrix's ``full`` row (the
main model's configuration) in ``metrics/matrix.json``, one value per seed. The alias
``cfg.tracking.champion_alias`` moves to the new version only if

1. there is no champion yet, or
2. the champion carries per-seed evidence on the **same validation set** (equal
   ``evidence.val_fingerprint`` tags: same held-out videos and ground truth, same tIoUs), and
   the paired difference new − champion over their common seeds (at least 2) has its 95 %
   t interval (:func:`amnet.evaluation.stats.paired_difference`) entirely above zero.

The test split never feeds the decision (its score is only recorded, as tag ``score``).
``amnet promote --force`` moves the alias anyway. The per-seed values, the decision, its
reason and the interval are tags on the new version (``evidence.*``, ``promotion.*``), so the
registry UI shows why.

Pipeline stage: ``python -m workflows.register -p params/default.yaml --run-file
outputs/train/mlflow_run.json --matrix metrics/matrix.json --out outputs/register.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amnet.io import atomic_write_text
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

log = logging.getLogger(__name__)

METRIC = "test/average_mAP"          # recorded on the version, never decides
EVIDENCE = "val/average_mAP"         # what decides: per seed, from the matrix
EVIDENCE_ROW = "full"
TAG_SEEDS = "evidence.val_seeds"     # JSON {seed: value}
TAG_VAL_FP = "evidence.val_fingerprint"


def matrix_evidence(path: str | Path, row: str = EVIDENCE_ROW,
                    key: str = EVIDENCE) -> dict[str, float]:
    """``{seed: value}`` of ``row``'s finished cells in the matrix summary ``path``."""
    from amnet.io import read_json_object
    from workflows.tracking import TrackingError

    m = read_json_object(path)
    entry = ((m or {}).get("rows") or {}).get(row)
    if entry is None:
        raise TrackingError(f"{path}: no matrix row {row!r} (run the matrix with that row: "
                            "`dvc repro matrix`)")
    seeds = {str(s): float(v[key]) for s, v in (entry.get("seeds") or {}).items()
             if v.get("status") == "ok" and key in v}
    if not seeds:
        raise TrackingError(f"{path}: row {row!r} has no finished seed with {key!r}")
    return seeds


def _stand_in(cfg: WorkflowConfig, run_id: str) -> Any:
    """The run ``amnet evaluate`` logged for ``run_id`` when that run is not in this store
    (a clone restored with ``dvc pull``): the newest one with a model."""
    import mlflow

    from workflows import tracking

    runs = [r for r in tracking.stand_in_runs(cfg, run_id)
            if r.data.tags.get(tracking.TAG_MODEL_URI)]
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


def _fmt_interval(iv: Any) -> str:
    return f"{iv.mean:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}] (n={iv.n})"


def decide(new: dict[str, float], champion: dict[str, float] | None, *,
           same_val_set: bool, confidence: float = 0.95) -> tuple[str, str, Any]:
    """``(decision, reason, interval or None)`` of the evidence gate (module docstring)."""
    from amnet.evaluation.stats import paired_difference

    if champion is None:
        return "champion", "no champion carried evidence to compare with", None
    if not same_val_set:
        return "rejected", ("the champion was validated on another validation set; not "
                            "comparable, use `amnet promote --force`"), None
    seeds = sorted(set(new) & set(champion), key=int)
    if len(seeds) < 2:
        return "rejected", (f"{len(seeds)} seed(s) in common with the champion "
                            f"({sorted(champion)} vs {sorted(new)}): a paired interval needs "
                            "at least 2"), None
    iv = paired_difference([new[s] for s in seeds], [champion[s] for s in seeds],
                           confidence=confidence)
    text = f"{EVIDENCE} new − champion = {_fmt_interval(iv)}, {100 * confidence:g} % interval"
    if iv.low > 0:
        return "champion", f"{text} above 0", iv
    return "rejected", f"{text} not above 0", iv


def promote(cfg: WorkflowConfig, run_id: str, *,
            evidence: dict[str, float] | Callable[[], dict[str, float]], force: bool = False,
            model_uri: str | None = None, confidence: float = 0.95,
            row: str = EVIDENCE_ROW) -> dict[str, Any]:
    """Register ``run_id``'s model; move the champion alias on evidence (module docstring).

    ``evidence``: ``{seed: validation average mAP}`` of the model's configuration (see
    :func:`matrix_evidence`), or a function returning it (read once the run is resolved).
    A ``run_id`` this store does not hold is replaced by the run ``amnet evaluate`` logged
    for it (tag ``amnet.source_run_id``).

    Returns ``{"model", "version", "run_id", "decision" ("champion" | "rejected"), "reason",
    "evidence", "evidence_mean", "interval", "champion_version", "champion_evidence",
    "val_fingerprint", "test_score"}``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from amnet.evaluation.stats import mean_std
    from workflows import tracking

    tracking.configure(cfg)
    client = MlflowClient()
    name, alias = cfg.tracking.registered_model, cfg.tracking.champion_alias
    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = _stand_in(cfg, run_id)
    source_run_id = run.data.tags.get(tracking.TAG_SOURCE_RUN)
    run_id = run.info.run_id
    model_uri = model_uri or run.data.tags.get(tracking.TAG_MODEL_URI)
    if not model_uri:
        raise tracking.TrackingError(f"run {run_id} has no logged model (tag "
                                     f"{tracking.TAG_MODEL_URI!r}); it was trained without "
                                     f"tracking.log_model")
    if callable(evidence):
        evidence = evidence()
    if not evidence:
        raise tracking.TrackingError("no per-seed validation evidence to decide on")
    val_fp = tracking.validation_set_fingerprint(cfg)
    test_score = run.data.metrics.get(METRIC)
    champion = None
    with contextlib.suppress(MlflowException):  # no registered model or no alias yet
        champion = client.get_model_version_by_alias(name, alias)
    seeds_json = json.dumps({k: evidence[k] for k in sorted(evidence, key=int)})
    mean = mean_std(list(evidence.values())).mean
    mv = mlflow.register_model(model_uri, name, tags={
        "run_id": run_id, "metric": EVIDENCE, "evidence.row": row, TAG_SEEDS: seeds_json,
        "evidence.val_mean": f"{mean:.6f}", TAG_VAL_FP: val_fp,
        "score": "" if test_score is None else f"{test_score:.6f}",
        "test_fingerprint": run.data.tags.get(tracking.TAG_FINGERPRINT, "")})
    result: dict[str, Any] = {"model": name, "version": int(mv.version), "run_id": run_id,
                              "evidence": dict(evidence), "evidence_mean": mean,
                              "val_fingerprint": val_fp, "test_score": test_score,
                              "champion_version": None, "champion_evidence": None,
                              "interval": None}
    if source_run_id:
        result["source_run_id"] = source_run_id
    champ_seeds = None
    if champion is not None:
        result["champion_version"] = int(champion.version)
        raw = champion.tags.get(TAG_SEEDS)
        champ_seeds = {str(k): float(v) for k, v in json.loads(raw).items()} if raw else None
        result["champion_evidence"] = champ_seeds
    if champion is None:
        decision, reason, iv = "champion", f"no '{alias}' version existed", None
    elif force:
        decision, reason, iv = "champion", f"forced over version {champion.version}", None
    elif champ_seeds is None:
        decision, reason, iv = "rejected", (
            f"version {champion.version} carries no per-seed validation evidence "
            f"({TAG_SEEDS}); not comparable, use `amnet promote --force`"), None
    else:
        decision, reason, iv = decide(evidence, champ_seeds,
                                      same_val_set=champion.tags.get(TAG_VAL_FP) == val_fp,
                                      confidence=confidence)
        reason = f"{reason} (version {champion.version})"
    if iv is not None:
        result["interval"] = {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n,
                              "confidence": iv.confidence}
    if decision == "champion":
        client.set_registered_model_alias(name, alias, mv.version)
    result.update(decision=decision, reason=reason)
    tags = {"promotion.decision": decision, "promotion.reason": reason,
            "promotion.champion_version": str(result["champion_version"]),
            "promotion.champion_val_seeds": json.dumps(champ_seeds) if champ_seeds else "None",
            "promotion.interval": "None" if iv is None else _fmt_interval(iv)}
    for key, value in tags.items():
        client.set_model_version_tag(name, mv.version, key, value)
    client.set_registered_model_tag(
        name, "promotion_rule",
        f"'{alias}' moves to a new version only if its configuration's {EVIDENCE} per seed "
        f"beats the current {alias}'s, paired by seed, with the {100 * confidence:g} % "
        f"interval above 0, on the same validation set ({TAG_VAL_FP}); test never decides")
    log.info("%s v%s: %s (%s)", name, mv.version, decision, reason)
    return result


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--run-id", help="MLflow run whose model to register")
    src.add_argument("--run-file", default="outputs/train/mlflow_run.json",
                     help="JSON with a run_id, written by `amnet train` (default: %(default)s)")
    parser.add_argument("--matrix", default="metrics/matrix.json",
                        help="the matrix summary holding the evidence (%(default)s)")
    parser.add_argument("--row", default=EVIDENCE_ROW,
                        help="its row of the model's configuration (%(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="move the champion alias even if the new version does not win")
    parser.add_argument("--out", "--json", dest="out", metavar="OUT",
                        help="write the decision as JSON here (the register stage)")


def run(args: argparse.Namespace) -> int:
    from workflows.tracking import read_run_id

    cfg = load_config(args.params, args.overrides)
    run_id = args.run_id or read_run_id(args.run_file, required=True, hint=" or give --run-id")
    result = promote(cfg, run_id, evidence=lambda: matrix_evidence(args.matrix, args.row),
                     force=args.force, row=args.row)
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
