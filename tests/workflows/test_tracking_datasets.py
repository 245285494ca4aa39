"""The MLflow UI for comparing ablations, on a real SQLite store: the feature set's splits as
dataset inputs (name, DVC hash as digest, split as context), experiments tagged so the UI opens
on training runs (issue 11, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from amnet.data.feature_set import FeatureSet
from amnet.data.split import split_videos
from amnet.data.synthetic import generate_synthetic
from amnet.io import sha256_file
from workflows import tracking
from workflows.config import load_config

TINY = ["data.synthetic.n_train=10", "data.synthetic.n_test=3", "data.synthetic.feature_dim=8",
        "data.feature_dim=8", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05"]
LOCK = ("schema: '2.0'\nstages:\n  features:\n    cmd: x\n    outs:\n"
        "    - path: data/features\n      hash: md5\n"
        "      md5: 0123456789abcdef0123456789abcdef.dir\n")


def _inputs(run_id: str) -> dict[str, dict]:
    run = MlflowClient().get_run(run_id)
    return {i.dataset.name: {"digest": i.dataset.digest, "source": i.dataset.source,
                             **{t.key: t.value for t in i.tags}}
            for i in run.inputs.dataset_inputs}


def test_experiments_open_on_training_runs(sqlite_overrides: list[str]) -> None:
    cfg = load_config(None, sqlite_overrides)
    client = MlflowClient(tracking.configure(cfg))
    key, kind = tracking.EXPERIMENT_KIND
    assert (key, kind) == ("mlflow.experimentKind", "custom_model_development")
    exp_id = tracking.get_or_create_experiment(cfg)
    assert client.get_experiment(exp_id).tags[key] == kind
    # an experiment made before (no kind) gets it; one given another kind keeps it
    old = client.create_experiment(cfg.tracking.experiment + "-old")
    assert key not in client.get_experiment(old).tags
    assert tracking.get_or_create_experiment(cfg, cfg.tracking.experiment + "-old") == old
    assert client.get_experiment(old).tags[key] == kind
    other = client.create_experiment(cfg.tracking.experiment + "-genai",
                                     tags={key: "genai_development"})
    tracking.get_or_create_experiment(cfg, cfg.tracking.experiment + "-genai")
    assert client.get_experiment(other).tags[key] == "genai_development"


def test_splits_are_logged_as_dataset_inputs(tmp_path: Path, sqlite_overrides: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [*TINY, *sqlite_overrides, "data.root=data/features"])
    root = generate_synthetic(cfg.data.synthetic, tmp_path / "data" / "features",
                              stride=cfg.data.stride, window=cfg.data.window)
    ann = FeatureSet.at(root).annotations()
    split = split_videos(ann.subset("Validation"), cfg.data.val_fraction, cfg.data.val_seed)
    assert split.val

    # outside DVC (no dvc.lock): the manifest's sha256 is the digest
    with tracking.start_run(cfg, run_name="no-dvc") as run:
        names = tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val", "test"))
    assert names == ["synthetic:train", "synthetic:val", "synthetic:test"]
    got = _inputs(run.info.run_id)
    digest = sha256_file(root / "manifest.json")[:32]
    assert {v["digest"] for v in got.values()} == {digest}
    assert {v["amnet.digest"] for v in got.values()} == {"manifest"}
    assert {n: v["mlflow.data.context"] for n, v in got.items()} == {
        "synthetic:train": "train", "synthetic:val": "val", "synthetic:test": "test"}
    assert got["synthetic:train"]["amnet.videos"] == str(len(split.train))
    assert got["synthetic:val"]["amnet.videos"] == str(len(split.val))
    assert got["synthetic:test"]["amnet.videos"] == "3"
    assert got["synthetic:val"]["amnet.subset"] == "Validation"
    assert str(root.resolve()) in got["synthetic:train"]["source"]

    # inside a DVC project: dvc.lock's hash of data.root is the digest; logging is idempotent
    (tmp_path / "dvc.lock").write_text(LOCK)
    with tracking.start_run(cfg, run_name="dvc") as run:
        tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val"))
        tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val"))
    got = _inputs(run.info.run_id)
    assert set(got) == {"synthetic:train", "synthetic:val"}
    assert {v["digest"] for v in got.values()} == {"0123456789abcdef0123456789abcdef.dir"}
    assert {v["amnet.digest"] for v in got.values()} == {"dvc"}

    # no validation split held out: no "val" dataset, training reads the whole subset
    none = cfg.replace("data.val_fraction=0")
    with tracking.start_run(none, run_name="no-val") as run:
        assert tracking.log_dataset_inputs(none, run.info.run_id, ("train", "val")) == [
            "synthetic:train"]
    assert _inputs(run.info.run_id)["synthetic:train"]["amnet.videos"] == "10"
    with pytest.raises(ValueError, match="unknown split"):
        tracking.log_dataset_inputs(cfg, run.info.run_id, ("validation",))


def test_concurrent_runs_log_one_dataset_without_a_race(
        tmp_path: Path, sqlite_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # sweep trials and matrix cells start together and log the same new dataset: the SQL store
    # looks it up, then inserts, so all but one hit its UNIQUE constraint (CI lost a trial so)
    import threading

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [*TINY, *sqlite_overrides, "data.root=data/features"])
    generate_synthetic(cfg.data.synthetic, tmp_path / "data" / "features",
                       stride=cfg.data.stride, window=cfg.data.window)
    client = MlflowClient(tracking.configure(cfg))
    exp_id = tracking.get_or_create_experiment(cfg)
    runs = [client.create_run(exp_id).info.run_id for _ in range(8)]
    start, errors = threading.Barrier(len(runs)), []

    def log(run_id: str) -> None:
        start.wait()
        try:
            tracking.log_dataset_inputs(cfg, run_id, ("train", "val"))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for r in runs:
        assert set(_inputs(r)) == {"synthetic:train", "synthetic:val"}
