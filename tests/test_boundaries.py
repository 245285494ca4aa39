"""The layering rule: the method (``amnet/``) never imports the workflow stack.

``amnet/`` must stay usable without Ray, MLflow, DVC or Optuna installed, and never imports
``workflows/`` (which wires them in on top of ``amnet/``). Every module under ``amnet/`` is
parsed (not imported), so an import hidden inside a function or a ``TYPE_CHECKING`` block
counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AMNET = Path(__file__).resolve().parents[1] / "amnet"
FORBIDDEN = ("ray", "mlflow", "dvc", "optuna", "workflows")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import statement in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):  # importlib.import_module("ray")
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def _modules() -> list[Path]:
    return sorted(AMNET.rglob("*.py"))


def test_amnet_has_modules() -> None:
    assert len(_modules()) > 10  # the glob found the package, not an empty folder


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(AMNET.parent)))
def test_amnet_never_imports_the_workflow_stack(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = [f"{path.relative_to(AMNET.parent)}:{line} imports {name}"
           for line, name in _imported_modules(tree) if name in FORBIDDEN]
    assert not bad, ("amnet/ must not import ray/mlflow/dvc/optuna/workflows (wire them in "
                     "workflows/): " + "; ".join(bad))


def test_the_checker_sees_imports_inside_functions() -> None:
    code = ("def f():\n    import ray.tune\n    from mlflow import log_metric\n"
            "    importlib.import_module('optuna')\nfrom . import dvc\n")
    names = [n for _, n in _imported_modules(ast.parse(code))]
    assert names == ["ray", "mlflow", "optuna"]  # a relative `from . import dvc` is local
