"""The full-scale synthetic I3D generator (``amnet.data.synthetic_i3d``) on small real subsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amnet.config import SyntheticI3DConfig
from amnet.data.annotations import load_annotations
from amnet.data.feature_set import FeatureSet
from amnet.data.feature_stats import (
    STAT_NAMES,
    crop_stats,
    feature_stats,
    in_real_range,
    profile_correlation,
)
from amnet.data.manifest import verify_manifest
from amnet.data.synthetic_i3d import confusable_pairs, generate_synthetic_i3d
from amnet.data.timing import expected_num_snippets
from amnet.errors import ConfigError, DataError
from tests.data.datahelpers import REAL_I3D, REPO, THUMOS_JSON
from workflows.config import load_config


def _real_subset(path: Path, per_subset: int, *, max_duration: float = 80.0) -> Path:
    """The first ``per_subset`` videos (by id) of each THUMOS14 subset no longer than
    ``max_duration``, their entries copied verbatim from the real file."""
    db = json.loads(THUMOS_JSON.read_text())["database"]
    pick: dict[str, dict] = {}
    for subset in ("Validation", "Test"):
        ids = [v for v in sorted(db) if db[v]["subset"] == subset
               and db[v]["duration"] <= max_duration]
        pick.update({v: db[v] for v in ids[:per_subset]})
    path.write_text(json.dumps({"version": "thumos14-subset", "database": pick}, indent=1))
    return path


def _generate(ann: Path, out: Path, *, stride: int = 8, dim: int = 64, seed: int = 0) -> Path:
    cfg = SyntheticI3DConfig(annotations=str(ann), seed=seed)
    return generate_synthetic_i3d(cfg, out, feature_dim=dim, num_classes=20, stride=stride,
                                  window=16)


@pytest.fixture(scope="module")
def subset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _real_subset(tmp_path_factory.mktemp("ann") / "thumos_subset.json", 3)


def test_layout_shape_dtype(subset_file: Path, tmp_path: Path) -> None:
    root = _generate(subset_file, tmp_path / "set")
    ann = load_annotations(subset_file)
    fs = FeatureSet(root)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"{v}.npy" for v in ann.videos] + ["annotations.json", "manifest.json"])
    for vid, v in ann.videos.items():
        x = np.load(fs.feature_path(vid))
        assert x.dtype == np.float32 and x.ndim == 2
        assert x.shape == (expected_num_snippets(v.duration, v.fps, 8, 16), 64), vid
        assert np.isfinite(x).all() and x.min() >= 0 and (x == 0).any() and (x > 0).mean() > 0.8
    m = verify_manifest(root)
    assert m["feature_dim"] == 64 and m["stride"] == 8 and m["window"] == 16
    assert m["classes"] == ann.classes and m["source"]["kind"] == "synthetic_i3d"
    assert {e["fps"] for e in m["videos"].values()} == {v.fps for v in ann.videos.values()}


def test_real_annotations_unmodified(subset_file: Path, tmp_path: Path) -> None:
    root = _generate(subset_file, tmp_path / "set")
    assert (root / "annotations.json").read_bytes() == subset_file.read_bytes()
    src = json.loads(subset_file.read_text())["database"]
    got = FeatureSet(root).raw_annotations()
    assert got is not None and set(got) == set(src)
    n = 0
    for vid, entry in src.items():
        assert np.load(root / f"{vid}.npy").shape[0] > 0
        pairs = {(a["label"], tuple(a["segment"])) for a in got[vid]["annotations"]}
        for a in entry["annotations"]:
            assert (a["label"], tuple(a["segment"])) in pairs
            n += 1
    assert n > 10


def test_seeded_determinism(subset_file: Path, tmp_path: Path) -> None:
    a = _generate(subset_file, tmp_path / "a")
    b = _generate(subset_file, tmp_path / "b")
    c = _generate(subset_file, tmp_path / "c", seed=1)
    names = sorted(p.name for p in a.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    npy = [n for n in names if n.endswith(".npy")]
    assert all((a / n).read_bytes() != (c / n).read_bytes() for n in npy)


def test_odd_dim_and_missing_file_refused(subset_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be even"):
        _generate(subset_file, tmp_path / "x", dim=63)
    with pytest.raises(DataError, match=r"data\.synthetic_i3d\.annotations: annotation "
                                        r"file not found"):
        _generate(tmp_path / "nope.json", tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_confusable_pairs_on_thumos14() -> None:
    ann = load_annotations(THUMOS_JSON)
    partner = confusable_pairs(ann)
    idx = ann.class_index
    assert partner[idx["CricketBowling"]] == idx["CricketShot"]
    assert partner[idx["CliffDiving"]] == idx["Diving"]
    assert (partner[partner] == np.arange(len(partner))).all()  # a matching
    assert (partner != np.arange(len(partner))).all()  # 20 classes: every one paired


def _streams(x: np.ndarray) -> dict[str, np.ndarray]:
    h = x.shape[1] // 2
    return {"rgb": x[:, :h], "flow": x[:, h:]}


@pytest.fixture(scope="module")
def stats_set(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[np.ndarray]]:
    """Ten real-layout videos at 1024 channels, stride 4 and 8 (a few seconds)."""
    tmp = tmp_path_factory.mktemp("stats")
    ann = _real_subset(tmp / "ann.json", 5, max_duration=120.0)
    out = {}
    for stride in (4, 8):
        root = _generate(ann, tmp / f"s{stride}", stride=stride, dim=1024)
        out[stride] = [np.load(p) for p in FeatureSet(root).feature_files()]
    return out


@pytest.mark.parametrize("stride", [4, 8])
def test_statistics_match_real_i3d(stats_set: dict[int, list[np.ndarray]], stride: int) -> None:
    """Every realism statistic of each stream within the two real samples' band."""
    real = [np.load(REAL_I3D / f"{n}.npy")[::stride // 4] for n in ("highjump", "tennis26")]
    bad = []
    for s in ("rgb", "flow"):
        r = [feature_stats(_streams(x)[s]) for x in real]
        vids = [_streams(x)[s] for x in stats_set[stride]]
        ours = [crop_stats(vids, len(x)) for x in real]
        for k in STAT_NAMES:
            o = (ours[0][k] + ours[1][k]) / 2
            if not in_real_range(k, [r[0][k], r[1][k]], o):
                bad.append(f"{s} {k}: ours {o:.3f}, real {r[0][k]:.3f} / {r[1][k]:.3f}")
        pair, o = profile_correlation([_streams(x)[s] for x in real]), profile_correlation(vids)
        if not in_real_range("xvideo_corr", [pair], o):
            bad.append(f"{s} xvideo_corr: ours {o:.3f}, real pair {pair:.3f}")
    assert not bad, "\n".join(bad)


def test_strides_describe_the_same_video(stats_set: dict[int, list[np.ndarray]]) -> None:
    """Time constants are in seconds: lag 1 at stride 8 ≈ lag 2 at stride 4, and so on."""
    s4 = crop_stats([x[:, :512] for x in stats_set[4]], 256)
    s8 = crop_stats([x[:, :512] for x in stats_set[8]], 128)
    for k8, k4 in ((1, 2), (2, 4), (4, 8)):
        assert abs(s8[f"lag_{k8}"] - s4[f"lag_{k4}"]) < 0.06, (k8, s8, s4)
    assert s4["lag_1"] > s8["lag_1"] + 0.05


def test_features_stage_builds_the_preset_layout(subset_file: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``amnet features`` with the preset (a small annotation file swapped in) fills data.root."""
    from workflows.features import prepare_features

    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "params" / "thumos14_synth.yaml", [
        "data.root=synth", f"data.synthetic_i3d.annotations={subset_file}",
        "data.feature_dim=32"])
    root = prepare_features(cfg)
    assert root == Path("synth") and (root / "annotations.json").read_bytes() == \
        subset_file.read_bytes()
    assert len(FeatureSet(root).video_ids()) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # nothing left beside it


def test_near_actions_and_soft_boundaries() -> None:
    """Unannotated near-actions lie in the gaps, weaker than actions, some incomplete; the
    presence envelope is 0.5 at the true boundaries and ramps (no step)."""
    from amnet.data.synthetic_i3d import AMP_RANGE, _envelopes, _events

    ann = load_annotations(THUMOS_JSON)
    v = ann.videos["video_validation_0000051"]
    labels = np.array([ann.class_index[lab] for lab in v.labels])
    cfg = SyntheticI3DConfig(near_actions=1.0, near_strength=0.4)
    partner = confusable_pairs(ann)
    ext, lab, amp, reach = _events(v, labels, partner, cfg, np.random.default_rng(0))
    n = len(v.segments)
    assert set(lab[n:]) <= set(labels) | set(partner[labels])  # the video's classes or partners
    assert len(ext) > n + n // 2  # about one near-action per action
    near = ext[n:]
    gap = ((near[:, None, 0] < v.segments[:, 1] + 1.0)
           & (near[:, None, 1] > v.segments[:, 0] - 1.0))
    assert not gap.any()
    assert (amp[n:] <= 0.4).all() and (amp[:n] >= AMP_RANGE[0]).all()
    assert (reach[:n] == 1).all() and (reach[n:] < 1).any()
    assert np.abs(ext[:n] - v.segments).max() > 0  # true extents jittered
    m, w = _envelopes(ext[:, 0].copy(), ext, reach)
    assert np.allclose(np.diag(m), 0.5)
    t = np.linspace(ext[0, 0] - 1, ext[0, 1] + 1, 400)
    m0, _ = _envelopes(t, ext[:1], reach[:1])
    assert np.abs(np.diff(m0[:, 0])).max() < 0.1  # a ramp, not a step
    assert np.allclose(w.sum(-1)[m > 0], 1.0)  # phase weights are a partition


def test_dvc_features_stage(subset_file: Path, tmp_path: Path) -> None:
    """The pipeline's own ``features`` stage under real DVC in a fresh git repo: builds the
    set, is a no-op the second time, reruns when the seed changes."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    repo = tmp_path / "repo"
    (repo / "params").mkdir(parents=True)
    for name in ("default", "thumos14"):
        shutil.copy(REPO / "params" / f"{name}.yaml", repo / "params")
    preset = yaml.safe_load((REPO / "params" / "thumos14_synth.yaml").read_text())
    preset["data"]["synthetic_i3d"]["annotations"] = str(subset_file)
    preset["data"]["feature_dim"] = 32
    (repo / "params" / "thumos14_synth.yaml").write_text(yaml.safe_dump(preset))
    spec = yaml.safe_load((REPO / "pipelines" / "thumos14_synth" / "dvc.yaml").read_text())
    stage = spec["stages"]["features"]
    # no copy of the code in the temporary repo; the annotation file is the small subset
    stage["deps"] = [str(subset_file) if d.endswith("thumos14.json") else d
                     for d in stage["deps"] if not d.startswith(("amnet/", "workflows/"))]
    (repo / "pipelines" / "thumos14_synth").mkdir(parents=True)
    (repo / "pipelines" / "thumos14_synth" / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"features": stage}}, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def sh(*cmd: str) -> str:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    target = "pipelines/thumos14_synth/dvc.yaml"
    sh("dvc", "repro", target)
    root = repo / "data" / "thumos14_synth"
    assert (root / "annotations.json").read_bytes() == subset_file.read_bytes()
    first = (root / "manifest.json").read_bytes()
    assert "didn't change" in sh("dvc", "repro", target)
    assert "didn't change" in sh("dvc", "repro", "-s", f"{target}:features")
    preset["data"]["synthetic_i3d"]["seed"] = 1
    (repo / "params" / "thumos14_synth.yaml").write_text(yaml.safe_dump(preset))
    sh("dvc", "repro", target)
    assert (root / "manifest.json").read_bytes() != first
    lock = yaml.safe_load((repo / "pipelines" / "thumos14_synth" / "dvc.lock").read_text())
    assert lock["stages"]["features"]["params"]["params/thumos14_synth.yaml"]["data"][
        "synthetic_i3d"]["seed"] == 1
