"""`amnet detect`: results JSON layout, timing, the registry, bad inputs, the real I3D samples."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from amnet.engine import build_model, build_train_state, save_checkpoint
from workflows import tracking
from workflows.cli import main
from workflows.config import WorkflowConfig, load_config
from workflows.detect import Sidecar, read_sidecar, video_timing

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "data" / "real_i3d"
CLASSES = ["HighJump", "TennisSwing", "Diving"]
# A small AMNet: 3 pyramid levels, 32 channels (the architecture is not what is tested here).
TINY = ["model.embed_dim=32", "model.n_heads=2", "model.fpn_levels=3", "model.gam_depth=1",
        "model.ame_layers=1", "model.head_layers=1",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "data.max_seq_len=64",
        f"data.num_classes={len(CLASSES)}"]
# A random model's matching logits are ~0, so Eq. 14's tanh would drop every point; plain
# sigmoid confidence (≈ the prior) keeps detections to check, and Soft-NMS keeps them apart.
KEEP = ["-s", "infer.confidence=sigmoid", "-s", "infer.min_duration=0"]


def tiny_config(in_dim: int, *extra: str) -> WorkflowConfig:
    return load_config(None, [*TINY, f"data.feature_dim={in_dim}", *extra])


def make_checkpoint(path: Path, in_dim: int, seed: int = 0) -> Path:
    cfg = tiny_config(in_dim)
    torch.manual_seed(seed)
    model = build_model(cfg, in_dim, len(CLASSES))
    save_checkpoint(path, build_train_state(cfg, model, 1), cfg, extra={"classes": CLASSES})
    return path


@pytest.fixture(scope="module")
def ckpt16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model16.pt", 16)


@pytest.fixture(scope="module")
def ckpt2048(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model2048.pt", 2048)


def write_features(folder: Path, lengths: dict[str, int], dim: int = 16,
                   dtype: type = np.float32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for vid, t in lengths.items():
        np.save(folder / f"{vid}.npy", rng.normal(size=(t, dim)).astype(dtype))
    return folder


def run_detect(*argv: str) -> int:
    return main(["detect", *map(str, argv)])


def check_layout(results: dict, durations: dict[str, float]) -> int:
    """The ActivityNet results layout, every segment inside [0, duration]; → #detections."""
    assert set(results) == {"version", "results", "external_data"}
    assert set(results["results"]) == set(durations)
    n = 0
    for vid, dets in results["results"].items():
        scores = [d["score"] for d in dets]
        assert scores == sorted(scores, reverse=True)
        for d in dets:
            assert set(d) == {"label", "score", "segment"}
            assert d["label"] in CLASSES
            assert isinstance(d["score"], float) and 0 < d["score"] <= 1
            s, e = d["segment"]
            assert 0.0 <= s < e <= durations[vid] + 1e-9, (vid, s, e, durations[vid])
        n += len(dets)
    return n


# --------------------------------------------------------------------------- happy paths

def test_folder_and_single_file(tmp_path: Path, ckpt16: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    feats = write_features(tmp_path / "feats", {"a": 40, "b": 57})
    np.save(feats / "c.npy", np.random.default_rng(1).normal(size=(9, 16)))  # float64 accepted
    (feats / "annotations.json").write_text(json.dumps(
        {"database": {"a": {"subset": "Test", "duration": 5.0, "fps": 30.0, "annotations": []}}}))
    out = tmp_path / "out" / "dets.json"
    assert run_detect(feats, "--model", ckpt16, "--json", out, "--top", "2", *KEEP) == 0
    results = json.loads(out.read_text())
    # a: from annotations.json; b, c: end of the last snippet, ((T-1)*4 + 16) / 30
    durations = {"a": 5.0, "b": (56 * 4 + 16) / 30, "c": (8 * 4 + 16) / 30}
    assert check_layout(results, durations) > 0
    assert all(results["results"][v] for v in durations)
    table = capsys.readouterr().out
    assert "a: " in table and "duration 5.00 s (annotations)" in table
    assert "duration 8.00 s (features)" in table  # b: 240 frames / 30 fps
    assert table.count("\n    1  ") == 3 and "\n    3  " not in table  # --top 2

    # one file of the same folder: same detections for that video, sidecar still read
    single = tmp_path / "single.json"
    assert run_detect(feats / "a.npy", "--model", ckpt16, "--json", single, *KEEP) == 0
    assert json.loads(single.read_text())["results"] == {"a": results["results"]["a"]}

    # --threshold drops exactly the detections below it
    thr = float(np.median([d["score"] for d in results["results"]["b"]]))
    cut = tmp_path / "cut.json"
    assert run_detect(feats, "--model", ckpt16, "--json", cut, "--threshold", thr, *KEEP) == 0
    assert json.loads(cut.read_text())["results"]["b"] == [
        d for d in results["results"]["b"] if d["score"] >= thr]


def test_prepared_feature_set(tmp_path: Path, ckpt16: Path) -> None:
    """A set written by `amnet features` (manifest.json + annotations.json): its durations."""
    from workflows.features import prepare_features

    root = tmp_path / "feats"
    prepare_features(tiny_config(16, f"data.root={root}", "data.synthetic.feature_dim=16",
                                 f"data.synthetic.num_classes={len(CLASSES)}",
                                 "data.synthetic.n_train=2", "data.synthetic.n_test=2"))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "amnet-features/1"
    gt = json.loads((root / "annotations.json").read_text())["database"]
    out = tmp_path / "dets.json"
    assert run_detect(root, "--model", ckpt16, "--json", out, *KEEP) == 0
    durations = {vid: float(v["duration"]) for vid, v in gt.items()}
    assert check_layout(json.loads(out.read_text()), durations) > 0


def test_fps_flag_scales_every_time(tmp_path: Path, ckpt16: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Times are (i·stride + window/2)/fps: halving the fps doubles every time exactly."""
    f = write_features(tmp_path / "f", {"v": 64})
    runs = {}
    for fps in (30, 15):
        assert run_detect(f / "v.npy", "--model", ckpt16, "--fps", fps, "--json", "-", *KEEP) == 0
        runs[fps] = json.loads(capsys.readouterr().out)["results"]["v"]
    assert len(runs[30]) == len(runs[15]) > 0
    for a, b in zip(runs[30], runs[15], strict=True):
        assert (a["label"], a["score"]) == (b["label"], b["score"])
        np.testing.assert_allclose(np.array(b["segment"]), 2 * np.array(a["segment"]),
                                   rtol=1e-12)


def test_timing_precedence(tmp_path: Path) -> None:
    """CLI flag > manifest entry > manifest folder-wide > annotations.json > the model's."""
    cfg = tiny_config(16)  # trained with data.default_fps=30, stride 4, window 16
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({
        "format": "amnet-features/1", "stride": 8, "window": 16,
        "videos": {"m": {"file": "m.npy", "fps": 25.0, "duration": 12.5},
                   "n": {"file": "n.npy", "fps": 10.0}}}))
    (folder / "annotations.json").write_text(json.dumps({"database": {
        "n": {"duration": 30.0, "fps": 99.0}, "z": {"duration": 7.0, "fps": 20.0}}}))
    side = read_sidecar(folder)
    m = video_timing("m", 10, side, cfg, {})
    assert (m.fps, m.stride, m.window, m.duration, m.duration_source) == (
        25.0, 8, 16, 12.5, "manifest")
    n = video_timing("n", 10, side, cfg, {})  # fps from its manifest entry, not annotations
    assert (n.fps, n.stride, n.duration, n.duration_source) == (10.0, 8, 30.0, "annotations")
    z = video_timing("z", 10, side, cfg, {"fps": 50.0, "window": 8})  # not in the manifest
    assert (z.fps, z.stride, z.window, z.duration) == (50.0, 8, 8, 7.0)
    # the `amnet extract` layout: folder-wide values under "settings", durations per video
    ext = tmp_path / "extracted"
    ext.mkdir()
    (ext / "manifest.json").write_text(json.dumps({
        "format": "amnet-extract/1", "settings": {"fps": 24.0, "stride": 2, "window": 8},
        "videos": {"x": {"file": "x.npy", "duration": 3.5}}}))
    x = video_timing("x", 10, read_sidecar(ext), cfg, {})
    assert (x.fps, x.stride, x.window, x.duration, x.duration_source) == (
        24.0, 2, 8, 3.5, "manifest")
    bare = video_timing("q", 10, Sidecar(None, {}, None, folder), cfg, {})
    assert (bare.fps, bare.stride, bare.window) == (30.0, 4, 16)
    assert bare.duration == pytest.approx((9 * 4 + 16) / 30) and bare.duration_source == "features"
    assert bare.meta("q") == {"video_id": "q", "fps": 30.0, "stride": 4, "window": 16,
                              "duration": bare.duration, "offset": 0}


def test_registered_model_uri(tmp_path: Path, ckpt16: Path, sqlite_overrides: list[str],
                              capsys: pytest.CaptureFixture[str],
                              caplog: pytest.LogCaptureFixture) -> None:
    """models:/<name>@champion from a real SQLite registry gives the checkpoint's detections."""
    from amnet.engine import load_model_for_inference

    model, cfg, names = load_model_for_inference(ckpt16, schema=WorkflowConfig)
    cfg = cfg.replace(*sqlite_overrides)
    with tracking.start_run(cfg, run_name="detect-test"):
        # as the pipeline logs it (tracking.log_trained_model): the checkpoint rides along
        info = tracking.log_model(model, torch.randn(1, 16, 32), None, names, cfg,
                                  checkpoint=ckpt16)
    name = cfg.tracking.registered_model
    mv = mlflow.register_model(info.model_uri, name)
    MlflowClient().set_registered_model_alias(name, "champion", mv.version)
    f = write_features(tmp_path / "f", {"v": 48})
    uri_flag = [o for o in sqlite_overrides if o.startswith("tracking.tracking_uri=")]
    args = [f, *KEEP, "-s", uri_flag[0], "--json", "-"]
    assert run_detect(*args, "--model", f"models:/{name}@champion") == 0
    from_registry = json.loads(capsys.readouterr().out)
    assert run_detect(*args, "--model", ckpt16) == 0
    from_ckpt = json.loads(capsys.readouterr().out)
    assert from_registry == from_ckpt and from_ckpt["results"]["v"]
    assert run_detect(*args, "--model", f"models:/{name}/{mv.version}") == 0
    caplog.clear()
    assert run_detect(*args, "--model", f"models:/{name}@no_such_alias") == 2
    assert "no_such_alias" in one_error(caplog)


# --------------------------------------------------------------------------- bad inputs

def one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


def test_missing_model_is_one_line_exit_2(tmp_path: Path) -> None:
    f = write_features(tmp_path / "f", {"v": 8})
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", "detect", str(f), "--model",
                           str(tmp_path / "nope.pt")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint not found" in lines[0] and "nope.pt" in lines[0]


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong_dim", "feature dimension is 2048, expected 16"),
    ("nan", "non-finite feature value"),
    ("rank", "expected rank 2"),
    ("zero_length", "zero-length video"),
    ("empty_folder", "empty folder"),
    ("missing_features", "features not found"),
    ("foreign_checkpoint", "not an amnet checkpoint"),
    ("bad_override", "only infer.* and tracking.*"),
    ("bad_device", "--device"),
    ("bad_manifest", "video 'good': field 'fps' must be > 0, got -30"),
])
def test_bad_inputs_exit_2_with_one_line(case: str, expected: str, tmp_path: Path, ckpt16: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    folder = write_features(tmp_path / "f", {"good": 20})
    model: Path = ckpt16
    extra: list[str] = []
    target = folder
    if case == "wrong_dim":
        np.save(folder / "wide.npy", np.zeros((20, 2048), dtype=np.float32))
    elif case == "nan":
        arr = np.zeros((20, 16), dtype=np.float64)
        arr[3, 5] = np.nan
        np.save(folder / "nanvid.npy", arr)
    elif case == "rank":
        np.save(folder / "flat.npy", np.zeros(16, dtype=np.float32))
    elif case == "zero_length":
        np.save(folder / "empty.npy", np.zeros((0, 16), dtype=np.float32))
    elif case == "empty_folder":
        target = tmp_path / "nothing"
        target.mkdir()
    elif case == "missing_features":
        target = tmp_path / "gone.npy"
    elif case == "foreign_checkpoint":
        model = tmp_path / "other.pt"
        torch.save({"state_dict": {"w": torch.zeros(2)}}, model)
    elif case == "bad_override":
        extra = ["-s", "model.embed_dim=64"]
    elif case == "bad_device":
        extra = ["--device", "tpu:0"]
    elif case == "bad_manifest":
        (folder / "manifest.json").write_text(json.dumps({"videos": {"good": {"fps": -30}}}))
    out = tmp_path / "out.json"
    with caplog.at_level(logging.INFO):
        rc = run_detect(target, "--model", model, "--json", out, *extra)
    assert rc == 2
    msg = one_error(caplog)
    assert expected in msg, msg
    assert not out.exists()  # nothing half-written
    if case in ("wrong_dim", "nan", "rank", "zero_length"):
        assert str(folder) in msg  # names the file


def test_registry_errors(tmp_path: Path, sqlite_overrides: list[str],
                         caplog: pytest.LogCaptureFixture) -> None:
    f = write_features(tmp_path / "f", {"v": 8})
    uri = next(o for o in sqlite_overrides if o.startswith("tracking.tracking_uri="))
    cases = [
        ([uri], "models:/no_such_model@champion", "no_such_model"),
        ([uri], "models:/just-a-name", "expected models:/<name>@<alias>"),
        ([f"tracking.tracking_uri=sqlite:///{tmp_path / 'absent.db'}"],
         "models:/amnet-tal@champion", "no MLflow store"),
    ]
    for overrides, spec, expected in cases:
        caplog.clear()
        sets = [a for o in overrides for a in ("-s", o)]
        assert run_detect(f, "--model", spec, *sets) == 2, spec
        msg = one_error(caplog)
        assert expected in msg, msg
    assert not (tmp_path / "absent.db").exists()  # a typo'd store is not created


# --------------------------------------------------------------------------- real I3D features

def test_real_i3d_samples(tmp_path: Path, ckpt2048: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """The two real float64 I3D files (164 / 89 × 2048): valid JSON, times inside each video.

    A freshly initialised 2048-d model does not recognise the actions; what is checked is the
    format, the dtype handling and the timing (30 fps, stride 4, window 16; the durations
    24.0 s / 11.0 s come from the annotations.json beside the features).
    """
    ann = json.loads((REAL / "annotations.json").read_text())["database"]
    durations = {vid: float(v["duration"]) for vid, v in ann.items()}
    assert durations == {"highjump": 24.0, "tennis26": 11.0}
    assert np.load(REAL / "highjump.npy", mmap_mode="r").dtype == np.float64
    out = tmp_path / "real.json"
    assert run_detect(REAL, "--model", ckpt2048, "--json", out, *KEEP) == 0
    results = json.loads(out.read_text())
    assert check_layout(results, durations) > 0
    assert all(results["results"][v] for v in durations)
    # tennis26's 89 snippets reach 12.0 s > 11.0 s: its detections are clipped, not dropped
    ends = [d["segment"][1] for d in results["results"]["tennis26"]]
    assert max(ends) == 11.0  # (this seed's model has detections reaching past the end)
    table = capsys.readouterr().out
    assert "highjump: " in table and "duration 24.00 s (annotations)" in table
    assert "fps 30, stride 4, window 16" in table
