"""The rows file of the matrix: the project's file resolves, bad files get one line naming the
file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amnet.errors import ConfigError
from workflows.matrix.paper import EXPERIMENTS
from workflows.matrix.spec import build_spec, load_matrix_file

REPO = Path(__file__).resolve().parents[2]
ROWS = REPO / "params" / "ablations.yaml"


def test_the_project_presets() -> None:
    default = build_spec(REPO / "params" / "default.yaml", ROWS)
    assert default.preset == "default" and default.seeds == [0, 1, 2, 3, 4]
    assert len(default.rows) == 5 and len(default.cells) == 25  # Table 2's rows
    full = build_spec(REPO / "params" / "default.yaml", ROWS, preset="full")
    # every row the paper's tables name is in the full preset, our variants' in `variants`
    assert {r.row for e in EXPERIMENTS if e.key != "variants" for r in e.rows} <= set(full.rows)
    variants = build_spec(REPO / "params" / "default.yaml", ROWS, preset="variants")
    assert {r.row for e in EXPERIMENTS if e.key == "variants" for r in e.rows} <= set(
        variants.rows)
    shared = {tuple(c.rows) for c in full.cells if len(c.rows) > 1}
    assert ("full", "lam_1_1", "match_l2", "gam_depth_1") in shared
    assert ("conf_sigmoid_sigmoid", "match_bce") in shared
    sa = full.cell(full.by_row_seed[("self_attention", 0)]).cfg.model
    assert (sa.ame, sa.gam, sa.self_attention) == (False, False, True)
    assert full.cell(full.by_row_seed[("lam_2_1", 1)]).cfg.loss.lambda1 == 2.0


@pytest.mark.parametrize(("edit", "message"), [
    ({"matrix": {"seeds": [0, 0]}}, "matrix.seeds must be a non-empty list of distinct"),
    ({"matrix": {"cpus": 1}}, "unknown key matrix.cpus"),
    ({"matrix": {"cpus_per_cell": 0}}, "matrix.cpus_per_cell must be > 0"),
    ({"matrix": {"keep_models": "yes"}}, "matrix.keep_models must be true or false"),
    ({"presets": {"default": ["nope"]}}, "preset 'default' names no row or an unknown row"),
    ({"rows": {"x": {"tables": ["table9"], "overrides": []}}}, "unknown table 'table9'"),
    ({"rows": {"x": {"overrides": ["model.ame"]}}}, "'overrides' must be key=value"),
])
def test_bad_rows_files_name_the_key(tmp_path: Path, edit: dict, message: str) -> None:
    raw = yaml.safe_load(ROWS.read_text())
    for k, v in edit.items():
        raw[k] = {**raw[k], **v} if k == "matrix" else v
    if "rows" in edit:
        raw["presets"] = {"default": list(edit["rows"])}
    path = tmp_path / "ablations.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=message) as e:
        load_matrix_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_row_override_that_does_not_validate_names_the_row(tmp_path: Path) -> None:
    raw = yaml.safe_load(ROWS.read_text())
    raw["rows"] = {"bad": {"overrides": ["loss.lambda1=-1"]}}
    raw["presets"] = {"default": ["bad"]}
    path = tmp_path / "ablations.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=r"ablation row 'bad'.*loss\.lambda1"):
        build_spec(REPO / "params" / "default.yaml", path)


def test_cell_keys_hold_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished cell is reused only by the code that computed it: the key changes with the
    code fingerprint (every .py of amnet/ and workflows/), which reads the files."""
    from workflows.matrix import spec as spec_mod

    before = build_spec(REPO / "params" / "default.yaml", ROWS)
    trained = spec_mod.training_key(before.cells[0].cfg)
    fp = spec_mod.code_fingerprint()
    assert len(fp) == 16 and fp == spec_mod.code_fingerprint()
    monkeypatch.setattr(spec_mod, "code_fingerprint", lambda: "edited")
    after = build_spec(REPO / "params" / "default.yaml", ROWS)
    assert len(after.cells) == len(before.cells)
    assert not {c.key for c in after.cells} & {c.key for c in before.cells}
    assert spec_mod.training_key(before.cells[0].cfg) != trained
