"""TALDataset items, training crops, batching, and the checks made in its constructor."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datahelpers import REAL_I3D, video, write_set

from amnet.config import DataConfig
from amnet.data.dataset import TALDataset, collate, crop_window
from amnet.data.manifest import write_manifest
from amnet.data.timing import seconds_to_snippet
from amnet.errors import DataError


def test_real_i3d_release_loads(tmp_path: Path) -> None:
    cfg = DataConfig(feature_dim=2048, num_classes=20, stride=4, window=16)
    ds = TALDataset(cfg, "Test", training=False, root=REAL_I3D)
    raw = json.loads((REAL_I3D / "annotations.json").read_text())["database"]
    assert ds.video_ids == ["highjump", "tennis26"] and ds.classes == ["HighJump", "TennisSwing"]
    for i, vid in enumerate(ds.video_ids):
        item = ds[i]
        t = np.load(REAL_I3D / f"{vid}.npy").shape[0]
        assert item["feats"].dtype == torch.float32 and item["feats"].shape == (2048, t)
        assert item["length"] == t and item["offset"] == 0
        assert (item["fps"], item["stride"], item["window"]) == (30.0, 4, 16)
        segs = np.array([a["segment"] for a in raw[vid]["annotations"]])
        np.testing.assert_allclose(item["segments"].numpy(), seconds_to_snippet(segs, 30.0, 4, 16),
                                   rtol=1e-6)
        assert item["labels"].dtype == torch.int64
    np.testing.assert_allclose(ds[0]["feats"].numpy().T, np.load(REAL_I3D / "highjump.npy"),
                               rtol=1e-6)


def test_inference_items_full_length(tiny_set: Path, data_cfg: DataConfig) -> None:
    ds = TALDataset(data_cfg, "Test", training=False, root=tiny_set)
    assert ds.video_ids == ["c", "d"]  # a video without actions is still evaluated
    item = ds[0]
    assert item["feats"].shape == (8, 99) and item["offset"] == 0 and item["length"] == 99
    # (2 s · 10 fps − 4/2) / 2 = 9 snippets
    np.testing.assert_allclose(item["segments"].numpy(), [[9.0, 29.0], [49.0, 69.0]])
    assert item["labels"].tolist() == [0, 1] and ds.classes == ["Jump", "Throw"]
    assert ds[1]["segments"].shape == (0, 2) and ds[1]["labels"].shape == (0,)


def _check_crop(item: dict, original: np.ndarray, thresh: float) -> None:
    """Every kept segment is the cut of an original that keeps >= thresh of its length."""
    off, n = item["offset"], item["length"]
    for s, e in item["segments"].numpy().astype(np.float64) + off:
        assert off <= s < e <= off + n
        cut = np.stack([np.maximum(original[:, 0], off), np.minimum(original[:, 1], off + n)], 1)
        match = np.flatnonzero(np.all(np.isclose(cut, [s, e], atol=1e-4), axis=1))
        assert len(match), (s, e)
        o = original[match[0]]
        assert (e - s) / (o[1] - o[0]) >= thresh - 1e-6


def test_training_crops(tiny_set: Path, data_cfg: DataConfig) -> None:
    ds = TALDataset(data_cfg, "Validation", training=True, root=tiny_set, seed=3)
    b = ds.video_ids.index("b")
    original = np.clip(seconds_to_snippet(ds.annotations.videos["b"].segments, 10.0, 2, 4), 0, 149)
    offsets = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[b]
        assert item["feats"].shape == (8, 32) and item["length"] == 32  # 149 snippets → crop
        assert len(item["labels"]) >= 1  # crops with no action are re-drawn
        full = np.load(tiny_set / "b.npy")
        np.testing.assert_array_equal(item["feats"].numpy().T,
                                      full[item["offset"]:item["offset"] + 32])
        _check_crop(item, original, data_cfg.trunc_thresh)
        offsets.add(item["offset"])
        again = ds[b]  # same (seed, epoch, index) → same crop
        assert again["offset"] == item["offset"]
        torch.testing.assert_close(again["segments"], item["segments"])
    assert len(offsets) > 3
    other = TALDataset(data_cfg, "Validation", training=True, root=tiny_set, seed=4)
    mine = []
    theirs = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        other.set_epoch(epoch)
        mine.append(ds[b]["offset"])
        theirs.append(other[b]["offset"])
    assert mine != theirs  # another seed, other crops


def test_short_video_crop_ratio(tiny_set: Path, data_cfg: DataConfig) -> None:
    cfg = dataclasses.replace(data_cfg, max_seq_len=256, crop_ratio_min=0.9)
    ds = TALDataset(cfg, "Validation", training=True, root=tiny_set)
    a = ds.video_ids.index("a")  # 99 snippets
    lengths = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        lengths.add(ds[a]["length"])
    assert min(lengths) >= 89 and max(lengths) <= 99 and len(lengths) > 2
    full = dataclasses.replace(cfg, crop_ratio_min=1.0)
    assert TALDataset(full, "Validation", training=True, root=tiny_set)[a]["length"] == 99


def test_crop_window_truncation_and_fallback() -> None:
    rng = np.random.default_rng(0)
    seg = np.array([[0.0, 10.0], [20.0, 30.0]])
    for _ in range(50):
        off, n, keep, rel = crop_window(seg, 100, 24, 0.9, 0.5, rng)
        assert n == 24
        cover = (np.minimum(seg[:, 1], off + n) - np.maximum(seg[:, 0], off)).clip(0) / 10
        np.testing.assert_array_equal(keep, np.flatnonzero(cover >= 0.5))
        np.testing.assert_allclose(rel, np.clip(seg[keep], off, off + n) - off)
    # an action longer than any crop can never keep 100 %: the best-covered one is kept
    off, n, keep, rel = crop_window(np.array([[10.0, 90.0]]), 100, 24, 0.9, 1.0, rng)
    assert keep.tolist() == [0] and np.allclose(rel, [[0.0, 24.0]])


def test_training_drops_videos_without_actions(tiny_set: Path, data_cfg: DataConfig,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        ds = TALDataset(data_cfg, "Test", training=True, root=tiny_set)
    assert ds.video_ids == ["c"] and "1 of 2 videos have no action" in caplog.text
    root = write_set(tiny_set.parent / "empty", {"x": video(anns=[]), "y": video("Test")})
    with pytest.raises(DataError, match="split 'Validation' has no annotated action"):
        TALDataset(data_cfg, "Validation", training=True, root=root)


def test_empty_split_and_missing_root(tiny_set: Path, data_cfg: DataConfig) -> None:
    with pytest.raises(DataError, match=r"split 'Train' is empty.*\['Test', 'Validation'\]"):
        TALDataset(data_cfg, "Train", training=True, root=tiny_set)
    with pytest.raises(DataError, match="feature folder not found"):
        TALDataset(data_cfg, "Test", training=False, root=tiny_set / "nope")


def test_too_many_classes(tiny_set: Path, data_cfg: DataConfig) -> None:
    cfg = dataclasses.replace(data_cfg, num_classes=1)
    with pytest.raises(DataError, match=r"2 classes but data\.num_classes=1"):
        TALDataset(cfg, "Test", training=False, root=tiny_set)


def test_duplicate_video_id_stops_dataset(tiny_set: Path, data_cfg: DataConfig) -> None:
    text = (tiny_set / "annotations.json").read_text()
    entry = json.dumps(video("Test"))
    (tiny_set / "annotations.json").write_text(
        text.replace('"database": {', f'"database": {{"c": {entry}, ', 1))
    with pytest.raises(DataError, match=r"duplicate video id\(s\) \['c'\]"):
        TALDataset(data_cfg, "Validation", training=True, root=tiny_set)


def test_manifest_is_checked(tiny_set: Path, data_cfg: DataConfig) -> None:
    write_manifest(tiny_set, stride=2, window=4, classes=["Jump", "Swim", "Throw"])
    ds = TALDataset(data_cfg, "Test", training=False, root=tiny_set)
    assert ds.classes == ["Jump", "Swim", "Throw"] and ds[0]["labels"].tolist() == [0, 2]
    with pytest.raises(DataError, match=r"prepared with stride=2 but data.stride=4"):
        TALDataset(dataclasses.replace(data_cfg, stride=4), "Test", training=False, root=tiny_set)
    with pytest.raises(DataError, match=r"prepared with feature_dim=8 but data.feature_dim=16"):
        TALDataset(dataclasses.replace(data_cfg, feature_dim=16), "Test", training=False,
                   root=tiny_set)
    np.save(tiny_set / "c.npy", np.zeros((99, 8), np.float32))
    with pytest.raises(DataError, match=r"video 'c': c.npy changed since the manifest"):
        TALDataset(data_cfg, "Test", training=False, root=tiny_set)


def test_unknown_label_against_manifest_classes(tiny_set: Path, data_cfg: DataConfig) -> None:
    write_manifest(tiny_set, stride=2, window=4)
    ann = json.loads((tiny_set / "annotations.json").read_text())
    ann["database"]["c"]["annotations"][0]["label"] = "Swim"
    (tiny_set / "annotations.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match=r"video 'c': unknown label 'Swim'"):
        TALDataset(data_cfg, "Test", training=False, root=tiny_set)


def test_length_duration_mismatch_warns(tmp_path: Path, data_cfg: DataConfig,
                                        caplog: pytest.LogCaptureFixture) -> None:
    root = write_set(tmp_path / "s", {"a": video()}, feats={"a": np.ones((400, 8), np.float32)})
    with caplog.at_level(logging.WARNING):
        TALDataset(data_cfg, "Validation", training=False, root=root)
    assert "disagrees >2x" in caplog.text and "a: 400 snippets, ~99 expected" in caplog.text


def test_cache_off_gives_same_items(tiny_set: Path, data_cfg: DataConfig) -> None:
    on = TALDataset(data_cfg, "Validation", training=True, root=tiny_set, cache=True)
    off = TALDataset(data_cfg, "Validation", training=True, root=tiny_set, cache=False)
    for ds in (on, off):
        ds.set_epoch(5)
    for i in range(len(on)):
        a, b = on[i], off[i]
        torch.testing.assert_close(a["feats"], b["feats"])
        torch.testing.assert_close(a["segments"], b["segments"])


def test_collate(tiny_set: Path, data_cfg: DataConfig) -> None:
    ds = TALDataset(data_cfg, "Test", training=False, root=tiny_set)
    items = [ds[0], {**ds[1], "feats": ds[1]["feats"][:, :40], "length": 40}]
    batch = collate(items, pad_multiple=32)
    assert batch["feats"].shape == (2, 8, 128) and batch["feats"].dtype == torch.float32
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == [99, 40]
    assert torch.all(batch["feats"][1, :, 40:] == 0) and torch.all(batch["feats"][0, :, 99:] == 0)
    torch.testing.assert_close(batch["feats"][0, :, :99], ds[0]["feats"])
    assert batch["meta"][0] == {k: ds[0][k] for k in ("video_id", "fps", "duration", "stride",
                                                       "window", "offset", "length")}
    assert len(batch["segments"]) == 2 and batch["labels"][1].shape == (0,)
    assert collate(items, max_len=100)["feats"].shape == (2, 8, 100)
    with pytest.raises(ValueError, match="more than max_len=50"):
        collate(items, max_len=50)


def test_dataloader(tiny_set: Path, data_cfg: DataConfig) -> None:
    ds = TALDataset(data_cfg, "Validation", training=True, root=tiny_set)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, collate_fn=lambda b: collate(b, max_len=data_cfg.max_seq_len))
    (batch,) = list(loader)
    assert batch["feats"].shape == (2, 8, 32) and batch["mask"].all()


def test_label_only_in_the_test_subset_warns_once_naming_it(
        tmp_path: Path, data_cfg: DataConfig, caplog: pytest.LogCaptureFixture) -> None:
    db = {"a": video(), "c": video("Test", anns=[("Dive", 2.0, 6.0), ("Jump", 8.0, 9.0)])}
    root = write_set(tmp_path / "s", db)
    with caplog.at_level(logging.WARNING):
        TALDataset(data_cfg, "Validation", training=True, root=root)
        TALDataset(data_cfg, "Test", training=False, root=root)  # no training: no warning
    msgs = [r.getMessage() for r in caplog.records if "learned from nothing" in r.getMessage()]
    assert len(msgs) == 1 and "'Dive' (only in 'Test')" in msgs[0], msgs
    assert "'Validation'" in msgs[0] and str(root / "annotations.json") in msgs[0], msgs
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the other ranks of a data-parallel training
        TALDataset(data_cfg, "Validation", training=True, root=root, warn_untrained=False)
    assert not [r for r in caplog.records if "learned from nothing" in r.getMessage()]
