"""Narrow DVC deps: every stage depends on the modules it imports and the params sections it
reads, and on nothing else, so tracking, sweep, extraction, plot or report changes never
retrain (issue 11, item 7).

Two checks: the dep lists of ``dvc.yaml`` / ``pipelines/sweep/dvc.yaml`` cover the import
closure of each stage's command (parsed, so a new module cannot be forgotten), and in a real
git + DVC copy of the project, after ``dvc repro train``, ``dvc status`` reports ``train``
unchanged after such edits and changed after a model edit.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from dvc_project import dvc, git, make_project

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("amnet", "workflows")
#: what no training stage may depend on (the point of narrowing)
NEVER_TRAIN = ("amnet/extract", "workflows/report.py", "workflows/sweep",
               "amnet/evaluation/plots.py", "amnet/evaluation/analysis.py",
               "workflows/matrix/paper.py")


#: imports on a code path the stage never takes: a matrix cell scores with
#: ``workflows.evaluate.score_model(plots_dir=None)``, which imports the plots only for a folder
NOT_RUN = {"matrix": {"amnet/evaluation/plots.py", "amnet/evaluation/analysis.py"}}


def _module_file(name: str) -> Path | None:
    p = REPO.joinpath(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _imports(path: Path, module: str) -> set[str]:
    """Project modules ``path`` imports anywhere (function-level imports included)."""
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def import_closure(entry: str) -> set[str]:
    """Repo-relative files of every project module ``entry`` may import (parents too)."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            f = _module_file(name)
            if f is not None and name not in seen:
                seen[name] = f
                todo.extend(_imports(f, name))
    return {str(f.relative_to(REPO)) for f in seen.values()}


def _stages(dvc_file: Path) -> dict[str, dict]:
    stages = yaml.safe_load(dvc_file.read_text())["stages"]
    return {name: (s["do"] if "foreach" in s else s) for name, s in stages.items()}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


STAGE_FILES = [REPO / "dvc.yaml", REPO / "pipelines" / "sweep" / "dvc.yaml"]


@pytest.mark.parametrize("dvc_file", STAGE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_deps_cover_the_import_closure_and_no_more(dvc_file: Path) -> None:
    for name, stage in _stages(dvc_file).items():
        entry = re.search(r"python -m (\S+)", stage["cmd"]).group(1)
        if (REPO.joinpath(*entry.split(".")) / "__main__.py").is_file():  # `-m package`
            entry += ".__main__"
        deps = [d for d in stage["deps"] if not d.startswith(("${", "data/", "outputs/",
                                                              "metrics/"))]
        for d in deps:  # DVC refuses a dep path that does not exist
            assert (REPO / d).exists(), f"{dvc_file.name}:{name}: dep {d} does not exist"
        needed = {f for f in import_closure(entry) if (REPO / f).read_text().strip()}
        needed -= NOT_RUN.get(name, set())
        missing = sorted(f for f in needed if not _covered(f, deps))
        assert not missing, f"{dvc_file.name}:{name} imports {missing} but does not depend on it"
        # every module dep is imported by the stage (no over-wide folder such as `amnet`)
        for d in deps:
            assert any(_covered(f, [d]) for f in needed), f"{name}: dep {d} is never imported"
        if name in ("train", "matrix", "sweep"):  # the stages that train
            never = [n for n in NEVER_TRAIN if not (name == "sweep" and n == "workflows/sweep")]
            wide = [d for d in deps if any(_covered(n, [d]) or _covered(d, [n]) for n in never)]
            assert not wide, f"{name} would retrain when {wide} change"


def test_param_sections_exist_in_every_pipeline_preset() -> None:
    """DVC refuses a stage whose tracked section is missing from the params file, so every
    preset the root pipeline may read (README: change `cfg` to it) has each section."""
    sections: set[str] = set()
    for stage in _stages(REPO / "dvc.yaml").values():
        for entry in stage.get("params", []):
            if isinstance(entry, dict) and "${cfg}" in entry:
                sections.update(entry["${cfg}"] or [])
    assert {"data", "model", "loss", "train", "infer", "eval"} <= sections
    assert not sections & {"sweep", "extract"}
    for preset in ("default", "thumos14", "anet13"):
        have = set(yaml.safe_load((REPO / "params" / f"{preset}.yaml").read_text()))
        assert sections <= have, f"params/{preset}.yaml lacks {sorted(sections - have)}"


def _train_status(project: Path) -> dict:
    proc = dvc(project, "status", "--json", "train")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or "{}")


@pytest.mark.slow
def test_tracking_sweep_extract_plots_and_report_edits_do_not_retrain(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    proc = dvc(project, "repro", "train", env={"AMNET_NO_TRACK": None})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _train_status(project) == {}
    git(project, "add", "-A")
    git(project, "commit", "-qm", "trained")

    params = project / "params" / "default.yaml"
    cfg = yaml.safe_load(params.read_text())
    cfg["tracking"]["experiment"] = "another"
    cfg["sweep"] = {"num_samples": 9, "epochs": 3}
    params.write_text(yaml.safe_dump(cfg))
    for f in ("amnet/extract/i3d.py", "workflows/report.py", "amnet/evaluation/plots.py",
              "workflows/sweep/space.py"):
        with (project / f).open("a") as fh:
            fh.write("\n# an edit that must not retrain\n")
    assert _train_status(project) == {}, "train must not depend on these edits"
    out = dvc(project, "status", "--json")
    changed = set(json.loads(out.stdout or "{}"))
    assert "features" not in changed and "train" not in changed
    assert {"report", "register"} <= changed  # they do read the report / tracking.*

    cfg["model"]["embed_dim"] = 32  # a real training change: train is stale
    params.write_text(yaml.safe_dump(cfg))
    assert "train" in _train_status(project)
