"""What a sweep searches and optimises: the searched keys, Tune's space, each trial's config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from amnet.errors import AmnetError, ConfigError
from workflows.config import WorkflowConfig, from_dict

__all__ = ["METRIC", "MODE", "Dim", "SweepError", "search_dims", "trial_base", "tune_space",
           "with_values"]

# mAP averaged over eval.tiou on the VALIDATION split (data.val_fraction of the training
# subset, held out), reported every epoch: ASHA and the best config never see the test split
METRIC = "val/average_mAP"
MODE = "max"


class SweepError(AmnetError):
    """A sweep that cannot start, cannot be resumed, or in which every trial failed."""


@dataclass(frozen=True)
class Dim:
    """One searched config key: ``[low, high]``, integer or (log-)uniform float."""

    key: str
    low: float
    high: float
    integer: bool = False
    log: bool = False


def search_dims(cfg: WorkflowConfig) -> list[Dim]:
    """The searched keys from ``cfg.sweep``: λ1, λ2 (Eq. 12), the GAM depth, and ``train.lr`` /
    ``train.weight_decay`` when their bounds are given (an empty bound pair is not searched)."""
    s = cfg.sweep
    dims = [Dim("loss.lambda1", *s.lambda1), Dim("loss.lambda2", *s.lambda2),
            Dim("model.gam_depth", *s.gam_depth, integer=True)]
    if s.lr:
        dims.append(Dim("train.lr", *s.lr, log=True))
    if s.weight_decay:
        dims.append(Dim("train.weight_decay", *s.weight_decay, log=True))
    for d in dims:
        if d.log and d.low <= 0:
            raise ConfigError(f"sweep.{d.key.split('.')[-1]}: log-uniform bounds must be > 0, "
                              f"got [{d.low}, {d.high}]")
    return dims


def tune_space(dims: Sequence[Dim]) -> dict[str, Any]:
    """Ray Tune's ``param_space`` for ``dims`` (a bound pair with low == high is a constant)."""
    from ray import tune

    space: dict[str, Any] = {}
    for d in dims:
        if d.low == d.high:
            space[d.key] = int(d.low) if d.integer else float(d.low)
        elif d.integer:
            space[d.key] = tune.randint(int(d.low), int(d.high) + 1)  # upper bound exclusive
        elif d.log:
            space[d.key] = tune.loguniform(d.low, d.high)
        else:
            space[d.key] = tune.uniform(d.low, d.high)
    return space


def with_values(base: WorkflowConfig, values: dict[str, Any], source: str) -> WorkflowConfig:
    """``base`` with dotted ``values`` set, validated (a rejected value raises ConfigError).

    Works on the dict, not on ``key=value`` strings: YAML would read ``1e-05`` as a string.
    """
    data = base.to_dict()
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"{source}: unknown key {key!r}")
        node[leaf] = value.item() if hasattr(value, "item") else value
    return from_dict(data, source)


def trial_base(cfg: WorkflowConfig) -> WorkflowConfig:
    """What every trial shares: the sweep's epochs, mAP every epoch (ASHA), no run-name reuse.

    Raises :class:`SweepError` without a validation split: a sweep selects, and selecting
    on the test split would make the reported number optimistic.
    """
    s = cfg.sweep
    if cfg.data.val_fraction <= 0:
        raise SweepError("a sweep selects on the validation split, but data.val_fraction=0 "
                         "holds none out (expected e.g. data.val_fraction=0.2)")
    over = [f"train.epochs={s.epochs}", "train.eval_every=1", "ray.run_name="]
    if s.workers_per_trial > 1:
        over.append(f"ray.num_workers={s.workers_per_trial}")
    elif s.gpus_per_trial == 0:
        over.append("train.device=cpu")   # a CPU trial must not grab an unreserved GPU
    return cfg.replace(*over)
