"""The validation split: stratified, disjoint, seeded, every class covered; never trained on."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from datahelpers import video, write_set

from amnet import engine
from amnet.config import DataConfig, load_config
from amnet.data.annotations import VideoAnnotation
from amnet.data.dataset import TALDataset, train_val_datasets
from amnet.data.split import split_videos, stratum
from amnet.data.synthetic import generate_synthetic
from amnet.errors import ConfigError, DataError


def _videos(sizes: dict[str, int], empty: int = 0) -> list[VideoAnnotation]:
    out = []
    for label, n in sizes.items():
        for i in range(n):
            # a secondary label in some videos: the stratum is the majority one
            labels = [label, label, "Other"] if i % 2 else [label]
            out.append(VideoAnnotation(f"{label}_{i:02d}", "Validation", 100.0, 10.0,
                                       [[10.0 * j, 10.0 * j + 5] for j in range(len(labels))],
                                       labels))
    out += [VideoAnnotation(f"bg_{i}", "Validation", 50.0, 10.0, [], []) for i in range(empty)]
    return out


SIZES = {"A": 1, "B": 2, "C": 3, "D": 5, "E": 10, "F": 20}


def test_stratum_is_the_majority_label_ties_to_the_first_action() -> None:
    v = VideoAnnotation("v", "Validation", 60.0, 10.0, [[1, 2], [3, 4], [5, 6]], ["X", "Y", "Y"])
    assert stratum(v) == "Y"
    tie = VideoAnnotation("t", "Validation", 60.0, 10.0, [[1, 2], [3, 4]], ["Y", "X"])
    assert stratum(tie) == "Y"  # first action's label
    assert stratum(VideoAnnotation("e", "Validation", 60.0, 10.0, [], [])) == ""


def test_split_is_stratified_disjoint_and_covers_every_class() -> None:
    videos = _videos(SIZES, empty=4)
    split = split_videos(videos, 0.2, seed=0)
    ids = [v.video_id for v in videos]
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == sorted(ids)
    by_id = {v.video_id: stratum(v) for v in videos}
    val_per_class = Counter(by_id[v] for v in split.val)
    train_per_class = Counter(by_id[v] for v in split.train)
    # round(0.2 n), at least 1 where the class has >= 2 videos, never the whole class
    assert val_per_class == {"B": 1, "C": 1, "D": 1, "E": 2, "F": 4, "": 1}
    for label, n in SIZES.items():
        assert train_per_class[label] == n - val_per_class[label] >= 1
    # a larger fraction scales every stratum, still leaving one video in training
    big = Counter(by_id[v] for v in split_videos(videos, 0.9, seed=0).val)
    assert big == {"B": 1, "C": 2, "D": 4, "E": 9, "F": 18, "": 3}


def test_split_is_seeded_and_order_independent() -> None:
    videos = _videos(SIZES, empty=4)
    a = split_videos(videos, 0.2, seed=0)
    shuffled = videos[:]
    random.Random(1).shuffle(shuffled)
    assert split_videos(shuffled, 0.2, seed=0) == a  # same seed, any input order: same split
    assert split_videos(videos, 0.2, seed=1) != a  # another seed: another split
    # adding a video of one class leaves the other classes' picks unchanged
    more = split_videos([*videos, *_videos({"G": 4})], 0.2, seed=0)
    assert [v for v in more.val if not v.startswith("G_")] == a.val


def test_no_fraction_no_validation_and_bad_values() -> None:
    videos = _videos(SIZES)
    split = split_videos(videos, 0.0, seed=0)
    assert split.val == [] and len(split.train) == len(videos)
    with pytest.raises(ConfigError, match="val_fraction"):
        split_videos(videos, 1.0, seed=0)
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        load_config(None, ["data.val_fraction=-0.1"])


def test_datasets_hold_out_the_validation_part(tmp_path: Path, data_cfg: DataConfig) -> None:
    db = {f"{lab}{i}": video(anns=[(lab, 2.0, 6.0)]) for lab in ("Jump", "Throw")
          for i in range(5)}
    db["t0"] = video("Test")
    root = write_set(tmp_path / "set", db)
    cfg = replace(data_cfg, root=str(root), val_fraction=0.4, val_seed=3)
    train_ds, val_ds = train_val_datasets(cfg, seed=0)
    assert val_ds is not None and not val_ds.training and val_ds.subset_name == "Validation"
    assert not set(train_ds.video_ids) & set(val_ds.video_ids)
    assert sorted(train_ds.video_ids + val_ds.video_ids) == sorted(k for k in db if k != "t0")
    assert Counter(v[:-1] for v in val_ds.video_ids) == {"Jump": 2, "Throw": 2}
    # scored against the file as given, restricted to the validation videos of the subset
    gt = val_ds.scoring_ground_truth()["database"]
    assert set(gt) == {*val_ds.video_ids, "t0"} and gt["t0"] == db["t0"]
    # another seed holds out other videos; the same seed the same ones
    again = TALDataset(cfg, "Validation", training=False, part="val")
    assert again.video_ids == val_ds.video_ids
    other = TALDataset(replace(cfg, val_seed=4), "Validation", training=False, part="val")
    assert other.video_ids != val_ds.video_ids
    # no validation part: training reads the whole subset, and Test is no stand-in
    whole, none = train_val_datasets(replace(cfg, val_fraction=0.0), seed=0)
    assert none is None and len(whole) == 10
    with pytest.raises(DataError, match="no video for its 'val' part"):
        TALDataset(replace(cfg, val_fraction=0.0), "Validation", training=False, part="val")


def test_training_never_sees_a_validation_video(tmp_path: Path) -> None:
    over = ["data.synthetic.n_train=12", "data.synthetic.n_test=2",
            "data.synthetic.feature_dim=8", "data.feature_dim=8", "data.synthetic.num_classes=3",
            "data.num_classes=3", "data.synthetic.duration_scale=0.05", "data.max_seq_len=64",
            "model.fpn_levels=3", "model.regression_ranges=[[0,4],[4,8],[8,10000]]",
            "train.batch_size=2", f"data.root={tmp_path}"]
    cfg = load_config(None, over)
    generate_synthetic(cfg.data.synthetic, tmp_path, stride=cfg.data.stride,
                       window=cfg.data.window)
    train_ds, val_ds = train_val_datasets(cfg.data, seed=0)
    assert val_ds is not None
    classes = {v.labels[0] for v in val_ds.videos if v.labels}
    assert classes == set(train_ds.classes)  # every class is validated (>= 2 videos each)
    loader = engine.make_loader(train_ds, cfg, training=True)
    seen = set()
    for epoch in range(3):
        engine.train_epoch_setup(loader, train_ds, cfg, epoch)
        seen |= {m["video_id"] for batch in loader for m in batch["meta"]}
    assert seen == set(train_ds.video_ids) and not seen & set(val_ds.video_ids)
