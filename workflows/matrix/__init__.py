"""The ablation matrix (DVC stage ``matrix``): the paper's experiments as rows × seeds on Ray.

One module per job:

* :mod:`~workflows.matrix.spec`: the rows file, presets, rows × seeds, cell keys;
* :mod:`~workflows.matrix.cell`: one cell (train on the training part, validate on the
  validation part, score the test split), its MLflow child run;
* :mod:`~workflows.matrix.runner`: Ray scheduling, resume, crash recording, the parent run;
* :mod:`~workflows.matrix.summary`: per-row per-seed scores, mean ± std (``metrics/matrix.json``);
* :mod:`~workflows.matrix.paper`: the paper's numbers and claims, by table;
* :mod:`~workflows.matrix.cli`: ``amnet matrix`` / ``python -m workflows.matrix``.

Nothing is imported here, so ``amnet report`` can read :mod:`~workflows.matrix.paper` without
the training code.
"""
