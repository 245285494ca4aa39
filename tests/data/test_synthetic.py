"""The embedded synthetic set: THUMOS14's statistics, the release layout, determinism, and the
ambiguity it is built for (checked on the data itself, without a model)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from datahelpers import THUMOS_JSON

from amnet.config import DataConfig, SyntheticConfig
from amnet.data.annotations import load_annotations
from amnet.data.dataset import TALDataset
from amnet.data.manifest import verify_manifest
from amnet.data.synthetic import generate_synthetic, sample_layout
from amnet.data.timing import seconds_to_snippet

SMALL = SyntheticConfig(n_train=6, n_test=4, feature_dim=32, duration_scale=0.1, seed=7)


def _stats(durations: list[float], lengths: np.ndarray, counts: list[int]) -> dict[str, float]:
    return {"duration": float(np.median(durations)), "length": float(np.median(lengths)),
            "count_mean": float(np.mean(counts)), "count_median": float(np.median(counts))}


def test_layout_matches_thumos14() -> None:
    """Medians of the embedded parameters vs the real file: within 10 % (durations, action
    lengths) and 20 % (actions per video), at duration_scale=1 over 600 sampled videos."""
    real = load_annotations(THUMOS_JSON)
    rv = list(real.videos.values())
    want = _stats([v.duration for v in rv], np.concatenate([np.diff(v.segments)[:, 0] for v in rv]),
                  [len(v.labels) for v in rv])
    cfg = SyntheticConfig(n_train=300, n_test=300, duration_scale=1.0)
    sv = sample_layout(cfg, stride=4, window=16)
    lengths = np.concatenate([np.diff(v.segments)[:, 0] for v in sv])
    got = _stats([v.duration for v in sv], lengths, [len(v.labels) for v in sv])
    for key, tol in (("duration", 0.10), ("length", 0.10), ("count_mean", 0.20),
                     ("count_median", 0.20)):
        assert abs(got[key] / want[key] - 1) <= tol, (key, got[key], want[key])
    assert lengths.min() >= 0.2 and lengths.max() <= 118.0
    # one dominant class per video; some videos add the confusable partner (as THUMOS14 does)
    dominant = [np.mean(v.labels == v.dominant) for v in sv]
    assert min(dominant) > 0.5
    mixed = np.mean([len(set(v.labels.tolist())) > 1 for v in sv])
    real_mixed = np.mean([len(set(v.labels)) > 1 for v in rv])
    assert abs(mixed - real_mixed) < 0.07
    assert {int(k) for v in sv for k in v.labels} == set(range(20))
    # no overlaps, inside the video
    for v in sv:
        assert np.all(v.segments[:, 0] >= 0) and np.all(v.segments[:, 1] <= v.duration)
        assert np.all(v.segments[1:, 0] >= v.segments[:-1, 1])


def test_duration_scale_shortens_videos_not_actions() -> None:
    full = sample_layout(dataclasses.replace(SyntheticConfig(), duration_scale=1.0),
                         stride=4, window=16)
    short = sample_layout(SyntheticConfig(), stride=4, window=16)  # default scale 0.25
    np.testing.assert_allclose([v.duration for v in short],
                               [0.25 * v.duration for v in full], atol=1 / 30)
    rate = [sum(len(v.labels) for v in vs) / sum(v.duration for v in vs) for vs in (full, short)]
    assert abs(rate[1] / rate[0] - 1) < 0.35  # actions per second kept
    med = [np.median(np.concatenate([np.diff(v.segments)[:, 0] for v in vs]))
           for vs in (full, short)]
    assert abs(med[1] / med[0] - 1) < 0.2
    # default size: ~300 snippets per video
    assert 200 <= np.median([v.num_snippets for v in short]) <= 400


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_generate_is_deterministic_and_in_release_layout(tmp_path: Path) -> None:
    a = generate_synthetic(SMALL, tmp_path / "a", stride=4, window=16)
    b = generate_synthetic(SMALL, tmp_path / "b", stride=4, window=16)
    assert _digest(a) == _digest(b)  # byte-identical for the same seed
    c = generate_synthetic(dataclasses.replace(SMALL, seed=8), tmp_path / "c", stride=4,
                           window=16)
    assert _digest(c)["synth_test_0000.npy"] != _digest(a)["synth_test_0000.npy"]
    assert len(list(a.glob("*.npy"))) == 10
    raw = json.loads((a / "annotations.json").read_text())["database"]
    assert {v["subset"] for v in raw.values()} == {"Validation", "Test"}
    m = verify_manifest(a)
    assert m["classes"] == [f"action_{k:02d}" for k in range(20)] and m["feature_dim"] == 32
    cfg = DataConfig(feature_dim=32, stride=4, window=16, root=str(a))
    train = TALDataset(cfg, "Validation", training=True)
    test = TALDataset(cfg, "Test", training=False)
    assert len(train) == 6 and len(test) == 4
    for i in range(len(test)):
        item = test[i]
        vid = item["video_id"]
        assert item["feats"].shape[1] == m["videos"][vid]["shape"][0]
        assert (item["feats"] >= 0).all()
        assert round(raw[vid]["duration"] * 30) >= (item["length"] - 1) * 4 + 16  # frames cover it


@pytest.fixture(scope="module")
def default_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default generative model (C=256, scale 0.25), 20 + 20 videos."""
    cfg = dataclasses.replace(SyntheticConfig(), n_train=20, n_test=20)
    return generate_synthetic(cfg, tmp_path_factory.mktemp("syn"), stride=4, window=16)


def test_features_look_like_i3d(default_like: Path) -> None:
    """Non-negative, mostly small values with a tail, neighbours correlated (real I3D: median
    0.09-0.16, lag-1 autocorrelation 0.4-0.54 on the shared samples)."""
    f = np.load(default_like / "synth_test_0000.npy")
    assert f.dtype == np.float32 and f.ndim == 2 and f.shape[1] == 256
    assert f.min() >= 0 and 0.05 < np.median(f) < 0.4 and np.percentile(f, 99) > 4 * np.median(f)
    z = (f - f.mean(0)) / (f.std(0) + 1e-6)
    lag1 = float((z[1:] * z[:-1]).mean())
    lag16 = float((z[16:] * z[:-16]).mean())
    assert 0.3 < lag1 < 0.8 and lag16 < lag1 / 2


def _actions(root: Path, subset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(centre snippets, action means, labels, background snippets) of a split."""
    db = json.loads((root / "annotations.json").read_text())["database"]
    centre, mean, label, bg = [], [], [], []
    for vid, v in sorted(db.items()):
        if v["subset"] != subset:
            continue
        f = np.load(root / f"{vid}.npy")
        inside = np.zeros(len(f), dtype=bool)
        for a in v["annotations"]:
            s, e = seconds_to_snippet(np.array(a["segment"]), v["fps"], 4, 16)
            lo, hi = int(np.ceil(max(s, 0))), int(np.floor(min(e, len(f) - 1)))
            if hi < lo:
                continue
            inside[lo:hi + 1] = True
            centre.append(f[(lo + hi) // 2])
            mean.append(f[lo:hi + 1].mean(0))
            label.append(a["label_id"])
        bg.append(f[~inside])
    return np.array(centre), np.array(mean), np.array(label), np.concatenate(bg)


def test_ambiguous_per_snippet_learnable_in_context(default_like: Path) -> None:
    """Nearest-class-mean (train → test): one snippet is often wrong, mostly confusing a class
    with its pair partner; averaging over the action fixes most of it; a snippet alone barely
    tells action from background."""
    tr_c, tr_m, tr_y, tr_bg = _actions(default_like, "Validation")
    te_c, te_m, te_y, te_bg = _actions(default_like, "Test")
    mu, sd = tr_c.mean(0), tr_c.std(0) + 1e-6

    def ncm(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        z = (x_train - mu) / sd
        means = np.stack([z[tr_y == k].mean(0) for k in range(20)])
        return np.argmin(((((x_test - mu) / sd)[:, None] - means[None]) ** 2).sum(-1), 1)

    snippet = ncm(tr_c, te_c)
    action = ncm(tr_m, te_m)
    acc_snippet, acc_action = np.mean(snippet == te_y), np.mean(action == te_y)
    assert 0.2 < acc_snippet < 0.9  # far above chance (0.05), not perfect
    assert acc_action >= acc_snippet + 0.1
    wrong = snippet != te_y
    assert np.mean((snippet[wrong] ^ 1) == te_y[wrong]) > 0.3  # vs 1/19 if errors were random
    w = ((tr_c - mu) / sd).mean(0) - ((tr_bg - mu) / sd).mean(0)
    s_act, s_bg = ((te_c - mu) / sd) @ w, ((te_bg[::5] - mu) / sd) @ w
    auc = np.mean(s_act[:, None] > s_bg[None, :])
    assert 0.52 < auc < 0.8
