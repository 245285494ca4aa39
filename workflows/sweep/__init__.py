"""``amnet sweep`` and the DVC ``sweep`` stage: Ray Tune + Optuna (TPE) + ASHA over AMNet.

Searches λ1, λ2 (Eq. 12) and the GAM depth, plus ``train.lr`` / ``train.weight_decay`` when
``sweep.lr`` / ``sweep.weight_decay`` give bounds. Each trial trains ``sweep.epochs`` epochs and
reports ``val/average_mAP`` (the held-out validation split, never Test) every epoch, which
ASHA uses to stop weak trials early; the best config is the best validation score too.

One module per job:

* :mod:`~workflows.sweep.space`: the searched keys (:class:`Dim`), Tune's space, trial configs;
* :mod:`~workflows.sweep.trial`: one trial, in-process (``sweep.workers_per_trial == 1``) or
  driving a ``TorchTrainer`` with that many workers;
* :mod:`~workflows.sweep.driver`: :func:`run_sweep` (Tuner, OptunaSearch, ASHA, the MLflow
  parent run and its child runs, ``--resume``);
* :mod:`~workflows.sweep.summary`: the Optuna study rebuilt from the trial table, its
  optimisation-history and parameter-importance plots, the best-params file
  (``sweep.best_params_out``, ``base:`` the sweep's params file) that ``amnet train -p`` accepts;
* :mod:`~workflows.sweep.cli`: ``amnet sweep -p params/sweep.yaml`` /
  ``python -m workflows.sweep -p params/sweep.yaml``.

A trial that raises (e.g. a sampled value the config rejects) is recorded as failed and the
sweep goes on.
"""

from workflows.sweep.cli import add_arguments, main, run
from workflows.sweep.driver import STATE_FILE, SweepResult, run_sweep, saved_trial_status
from workflows.sweep.space import (
    METRIC,
    MODE,
    Dim,
    SweepError,
    search_dims,
    trial_base,
    tune_space,
    with_values,
)
from workflows.sweep.summary import optuna_study, write_best_params
from workflows.sweep.trial import TAG_TRIAL, run_trial

__all__ = [
    "METRIC",
    "MODE",
    "STATE_FILE",
    "TAG_TRIAL",
    "Dim",
    "SweepError",
    "SweepResult",
    "add_arguments",
    "main",
    "optuna_study",
    "run",
    "run_sweep",
    "run_trial",
    "saved_trial_status",
    "search_dims",
    "trial_base",
    "tune_space",
    "with_values",
    "write_best_params",
]
