"""The matrix's plan: the rows file (``params/ablations.yaml``), rows × seeds, cell keys.

A row's config is the pipeline's params file, then the file's ``common`` overrides, then the
row's overrides, then any command-line ``-s``; a seed sets ``train.seed``. A cell is one
(resolved config, seed); its key is a hash of that config without the sections that change
where and how it runs but not what it computes (``tracking``, ``ray``, ``sweep``,
``extract``), so rows that resolve to the same config share one cell, and a finished cell is
recognised on a rerun whatever the row is called. The key also holds a fingerprint of the
project's code (:func:`code_fingerprint`): a finished cell is reused only by the code that
computed it, so after an edit of ``amnet/`` or ``workflows/`` a rerun (``dvc repro`` keeps the
persisted cells) recomputes the cells instead of reporting the old code's numbers.

Cells whose configs differ only in how a trained model is scored (the ``infer`` and ``eval``
sections: Soft-NMS, voting, top-k, confidence formula at test time) have the same
:func:`training_key`: the runner trains them once and scores the one model under each cell's
settings, so a post-processing row costs an evaluation, not a training, and its paired
difference against its reference row holds the trained weights fixed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amnet.errors import ConfigError
from workflows.config import WorkflowConfig, load_config

__all__ = ["DEFAULT_ROWS", "Cell", "MatrixFile", "MatrixSettings", "Row", "Spec", "build_spec",
           "cell_key", "code_fingerprint", "load_matrix_file", "training_key"]

DEFAULT_ROWS = "params/ablations.yaml"
#: config sections that do not change what a cell computes (left out of its key)
UNKEYED = ("tracking", "ray", "sweep", "extract")
#: sections that only score a trained model: cells differing only here share one training
SCORING_ONLY = ("infer", "eval")
TABLE_IDS = ("table2", "table3", "table4", "table5", "fig6", "depth", "variants")


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    tables: tuple[str, ...]
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class MatrixSettings:
    """The rows file's ``matrix:`` section."""

    preset: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    cpus_per_cell: float = 1.0
    workers_per_cell: int = 0
    log_models: bool = False
    confidence: float = 0.95
    keep_models: bool = False


@dataclass(frozen=True)
class MatrixFile:
    path: Path
    settings: MatrixSettings
    presets: dict[str, tuple[str, ...]]
    common: tuple[str, ...]
    rows: dict[str, Row]


@dataclass
class Cell:
    key: str
    seed: int
    rows: list[str]                 # every row that resolves to this config (first = its name)
    cfg: WorkflowConfig

    @property
    def row(self) -> str:
        return self.rows[0]


@dataclass
class Spec:
    file: MatrixFile
    preset: str
    rows: list[str]                 # the preset's rows, in order
    seeds: list[int]
    cells: list[Cell]
    by_row_seed: dict[tuple[str, int], str] = field(default_factory=dict)   # -> cell key

    def cell(self, key: str) -> Cell:
        return next(c for c in self.cells if c.key == key)


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {what} must be a list of strings, got {value!r}")
    return tuple(value)


def _settings(raw: Any, where: str) -> MatrixSettings:
    if raw is None:
        return MatrixSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'matrix' must be a mapping")
    known = MatrixSettings.__dataclass_fields__
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key matrix.{unknown[0]} (known: "
                          f"{', '.join(known)})")
    s = MatrixSettings()
    seeds = raw.get("seeds", list(s.seeds))
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                       for x in seeds)):
        raise ConfigError(f"{where}: matrix.seeds must be a non-empty list of distinct "
                          f"non-negative integers, got {seeds!r}")
    cpus = raw.get("cpus_per_cell", s.cpus_per_cell)
    workers = raw.get("workers_per_cell", s.workers_per_cell)
    conf = raw.get("confidence", s.confidence)
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0:
        raise ConfigError(f"{where}: matrix.cpus_per_cell must be > 0, got {cpus!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"{where}: matrix.workers_per_cell must be an integer >= 0, "
                          f"got {workers!r}")
    if isinstance(conf, bool) or not isinstance(conf, float) or not 0 < conf < 1:
        raise ConfigError(f"{where}: matrix.confidence must be in (0, 1), got {conf!r}")
    log_models = raw.get("log_models", s.log_models)
    if not isinstance(log_models, bool):
        raise ConfigError(f"{where}: matrix.log_models must be true or false")
    keep_models = raw.get("keep_models", s.keep_models)
    if not isinstance(keep_models, bool):
        raise ConfigError(f"{where}: matrix.keep_models must be true or false")
    preset = raw.get("preset", s.preset)
    if not isinstance(preset, str):
        raise ConfigError(f"{where}: matrix.preset must be a preset name")
    return MatrixSettings(preset, tuple(seeds), float(cpus), workers, log_models, conf,
                          keep_models)


def load_matrix_file(path: str | Path = DEFAULT_ROWS) -> MatrixFile:
    """The rows file, checked: every problem names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ablations file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'rows'")
    rows_raw = raw.get("rows")
    if not isinstance(rows_raw, dict) or not rows_raw:
        raise ConfigError(f"{path}: 'rows' must be a non-empty mapping row name -> "
                          "{label, tables, overrides}")
    rows = {}
    for name, r in rows_raw.items():
        where = f"{path}: row {name!r}"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: expected a mapping with 'overrides'")
        ovs = _strings(r.get("overrides"), where, "'overrides'")
        if not all("=" in o for o in ovs):
            raise ConfigError(f"{where}: 'overrides' must be key=value strings")
        tables = _strings(r.get("tables"), where, "'tables'")
        bad = [t for t in tables if t not in TABLE_IDS]
        if bad:
            raise ConfigError(f"{where}: unknown table {bad[0]!r} (known: "
                              f"{', '.join(TABLE_IDS)})")
        rows[str(name)] = Row(str(name), str(r.get("label", name)), tables, ovs)
    presets_raw = raw.get("presets") or {"default": list(rows)}
    if not isinstance(presets_raw, dict):
        raise ConfigError(f"{path}: 'presets' must map a preset name to a list of rows")
    presets = {}
    for name, names in presets_raw.items():
        names = _strings(names, f"{path}: preset {name!r}", "a preset")
        missing = [n for n in names if n not in rows]
        if missing or not names:
            raise ConfigError(f"{path}: preset {name!r} names no row or an unknown row "
                              f"{missing[:1]} (rows: {', '.join(rows)})")
        presets[str(name)] = names
    return MatrixFile(path, _settings(raw.get("matrix"), str(path)), presets,
                      _strings(raw.get("common"), str(path), "'common'"), rows)


def row_config(params: str | Path | None, row: Row, common: Sequence[str],
               overrides: Sequence[str] = ()) -> WorkflowConfig:
    """The row's resolved config (params file → common → row → command-line overrides),
    logging to ``<tracking.experiment>-ablations``."""
    try:
        cfg = load_config(params, [*common, *row.overrides, *overrides])
    except ConfigError as e:
        raise ConfigError(f"ablation row {row.name!r}: {e}") from None
    return cfg.replace(f"tracking.experiment={cfg.tracking.experiment}-ablations")


@functools.cache
def code_fingerprint() -> str:
    """sha256 (16 hex digits) of every ``.py`` file of the ``amnet`` and ``workflows``
    packages this process imports, by relative path and content."""
    import amnet
    import workflows

    h = hashlib.sha256()
    for pkg in (amnet, workflows):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root.parent).as_posix().encode() + b"\0")
            h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _hash(cfg: WorkflowConfig, leave_out: Sequence[str]) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k not in leave_out}
    text = json.dumps({"config": d, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cell_key(cfg: WorkflowConfig) -> str:
    """Hash of what a cell computes: its resolved config (seed included) minus
    :data:`UNKEYED`, and the code (:func:`code_fingerprint`); 16 hex digits."""
    return _hash(cfg, UNKEYED)


def training_key(cfg: WorkflowConfig) -> str:
    """Hash of what a cell trains: :func:`cell_key` without :data:`SCORING_ONLY` (cells with
    one training key train once)."""
    return _hash(cfg, (*UNKEYED, *SCORING_ONLY))


def build_spec(params: str | Path | None, rows_file: str | Path = DEFAULT_ROWS, *,
               preset: str | None = None, seeds: Sequence[int] | None = None,
               overrides: Sequence[str] = ()) -> Spec:
    """Rows × seeds of ``preset`` (default: the file's ``matrix.preset``), deduplicated by
    :func:`cell_key`."""
    mf = load_matrix_file(rows_file)
    preset = preset or mf.settings.preset
    if preset not in mf.presets:
        raise ConfigError(f"{mf.path}: no preset {preset!r} (presets: "
                          f"{', '.join(mf.presets)})")
    seeds = list(seeds if seeds is not None else mf.settings.seeds)
    cells: dict[str, Cell] = {}
    by_row_seed = {}
    for name in mf.presets[preset]:
        base = row_config(params, mf.rows[name], mf.common, overrides)
        for seed in seeds:
            cfg = base.replace(f"train.seed={seed}")
            key = cell_key(cfg)
            if key in cells:
                cells[key].rows.append(name)
            else:
                cells[key] = Cell(key, seed, [name], cfg)
            by_row_seed[(name, seed)] = key
    return Spec(mf, preset, list(mf.presets[preset]), seeds, list(cells.values()), by_row_seed)
