"""``amnet.io.staged_outputs``: a stage's outputs land together or not at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from amnet.errors import ConfigError
from amnet.io import StagedOutputs, atomic_write_text, staged_outputs, write_json


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """Outputs of an earlier run: a metrics file and a plots folder."""
    write_json(tmp_path / "metrics" / "m.json", {"mAP": 0.5})
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"old png")
    (tmp_path / "plots" / "stale.csv").write_text("x\n")
    return tmp_path


def test_commit_replaces_every_output(previous: Path) -> None:
    with staged_outputs() as out:
        m = out.file(previous / "metrics" / "m.json")
        plots = out.folder(previous / "plots")
        new = out.file(previous / "fresh" / "deep" / "p.json")
        write_json(m, {"mAP": 0.7})
        (plots / "a.png").write_bytes(b"new png")
        write_json(new, {"results": {}})
        assert m.name == "m.json" and m.parent != previous / "metrics"  # real name, elsewhere
        assert out.final(plots / "a.png") == previous / "plots" / "a.png"
        assert (previous / "plots" / "a.png").read_bytes() == b"old png"  # not yet
    assert (previous / "metrics" / "m.json").read_text() == '{\n  "mAP": 0.7\n}\n'
    assert sorted(p.name for p in (previous / "plots").iterdir()) == ["a.png"]  # replaced whole
    assert (previous / "fresh" / "deep" / "p.json").is_file()
    assert not [p for p in previous.rglob(".amnet-stage-*")]


@pytest.mark.parametrize("error", [ValueError("plots failed"), KeyboardInterrupt()])
def test_a_failure_changes_nothing(previous: Path, error: BaseException) -> None:
    before = snapshot(previous)
    with pytest.raises(type(error)), staged_outputs() as out:
        write_json(out.file(previous / "metrics" / "m.json"), {"mAP": 0.9})
        (out.folder(previous / "plots") / "a.png").write_bytes(b"half")
        out.file(previous / "new" / "deeper" / "x.json").write_text("{}")
        raise error
    assert snapshot(previous) == before  # created parents ("new/deeper") are gone too


def test_a_failing_move_puts_the_old_outputs_back(previous: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(previous)
    real = os.replace
    calls = []

    def flaky(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        calls.append(dst)
        if Path(dst).name == "z.json":  # the last of three moves fails
            raise OSError(28, "No space left on device")
        real(src, dst)

    out = StagedOutputs()
    write_json(out.file(previous / "metrics" / "m.json"), {"mAP": 0.9})
    (out.folder(previous / "plots") / "b.png").write_bytes(b"new")
    write_json(out.file(previous / "metrics" / "z.json"), {})
    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="No space"):
        out.commit()
    assert [Path(c).name for c in calls[:3]] == ["m.json", "plots", "z.json"]
    assert snapshot(previous) == before  # m.json and plots/ are the old ones again


def test_checks_come_before_any_work(previous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (previous / "data").mkdir()
    (previous / "data" / "v.npy").write_bytes(b"features")
    before = snapshot(previous)
    with pytest.raises(ConfigError, match=r"not outputs of this stage \(\['v.npy'\]\)"), \
            staged_outputs() as out:
        out.folder(previous / "data")
    with pytest.raises(ConfigError, match="is a folder"), staged_outputs() as out:
        out.file(previous / "plots")
    with pytest.raises(ConfigError, match="lies inside the output folder"), \
            staged_outputs() as out:
        out.folder(previous / "plots")
        out.file(previous / "plots" / "p.json")
    with pytest.raises(ConfigError, match="given twice"), staged_outputs() as out:
        out.file(previous / "x.json")
        out.file(previous / "x.json")
    monkeypatch.chdir(previous / "plots")
    with pytest.raises(ConfigError, match="working directory"), staged_outputs() as out:
        out.folder(previous)
    with pytest.raises(ConfigError, match="working directory"), staged_outputs() as out:
        out.folder(".")
    assert snapshot(previous) == before


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with staged_outputs() as out:
            out.file(tmp_path / "a.json").write_text("{}")
            out.folder(tmp_path / "plots")
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "plots").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
