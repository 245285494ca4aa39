"""Sweeps (being split into one module per job)."""

from workflows.sweep.driver import *  # noqa: F403
from workflows.sweep.driver import (  # noqa: F401
    METRIC,
    Dim,
    add_arguments,
    main,
    optuna_study,
    run,
    run_sweep,
    search_dims,
    tune_space,
    with_values,
    write_best_params,
)
