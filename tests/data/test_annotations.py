"""ActivityNet-style annotation parsing: the real THUMOS14 file and every malformed variant."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from datahelpers import THUMOS_JSON, video

from amnet.data.annotations import load_annotations, parse_annotations
from amnet.errors import DataError


def dump(db: dict) -> str:
    return json.dumps({"database": db})


# --------------------------------------------------------------------------- real THUMOS14

def test_real_thumos14_splits_and_classes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ann = load_annotations(THUMOS_JSON)
    raw = json.loads(THUMOS_JSON.read_text())["database"]
    assert len(ann.subset("Validation")) == 200
    assert len(ann.subset("Test")) == 212
    assert len(ann.classes) == 20 and ann.classes == sorted(ann.classes)
    assert ann.class_index["BaseballPitch"] == 0
    # label_id in the file is the index in the sorted class list
    first = next(iter(raw.values()))["annotations"][0]
    assert ann.class_index[first["label"]] == first["label_id"]
    # every kept segment lies inside its video; the 30 that do not were clipped/dropped + warned
    for v in ann.videos.values():
        assert np.all(v.segments[:, 0] >= 0) and np.all(v.segments[:, 1] <= v.duration)
        assert np.all(v.segments[:, 1] > v.segments[:, 0])
    n_raw = sum(len(v["annotations"]) for v in raw.values())
    outside = sum(1 for v in raw.values() for a in v["annotations"]
                  if a["segment"][0] < 0 or a["segment"][1] > v["duration"])
    assert outside > 0
    assert "30 segment(s) outside [0, duration]" in caplog.text
    assert n_raw - outside <= sum(len(v.labels) for v in ann.videos.values()) <= n_raw
    st = ann.stats("Validation")
    assert st["videos"] == 200 and st["classes_present"] == 20


def test_real_thumos14_reject_policy_names_video() -> None:
    with pytest.raises(DataError, match=r"video 'video_test_\d+'.*outside \[0, "):
        load_annotations(THUMOS_JSON, segment_policy="reject")


# --------------------------------------------------------------------------- splits

def test_subset_is_case_insensitive_and_sorted() -> None:
    ann = parse_annotations(dump({"b": video(), "a": video(), "c": video("Test")}))
    assert [v.video_id for v in ann.subset("VALIDATION")] == ["a", "b"]
    assert [v.video_id for v in ann.subset("test")] == ["c"]


def test_empty_split_lists_existing_subsets() -> None:
    ann = parse_annotations(dump({"a": video()}), source="ann.json")
    with pytest.raises(DataError, match=r"ann.json: split 'Training' is empty.*\['Validation'\]"):
        ann.subset("Training")


# --------------------------------------------------------------------------- missing fields

@pytest.mark.parametrize("field", ["subset", "duration", "annotations"])
def test_missing_video_field(field: str) -> None:
    db = {"vid1": video()}
    del db["vid1"][field]
    with pytest.raises(DataError, match=rf"f.json: video 'vid1': missing field '{field}'"):
        parse_annotations(dump(db), source="f.json")


@pytest.mark.parametrize("field", ["label", "segment"])
def test_missing_annotation_field(field: str) -> None:
    db = {"vid1": video()}
    del db["vid1"]["annotations"][1][field]
    with pytest.raises(DataError,
                       match=rf"video 'vid1': annotations\[1\]: missing field '{field}'"):
        parse_annotations(dump(db))


def test_missing_database() -> None:
    with pytest.raises(DataError, match="missing field 'database'"):
        parse_annotations(json.dumps({"videos": {}}))


def test_missing_fps_needs_default() -> None:
    db = {"vid1": video()}
    del db["vid1"]["fps"]
    with pytest.raises(DataError, match="video 'vid1': missing field 'fps'"):
        parse_annotations(dump(db))
    assert parse_annotations(dump(db), default_fps=25.0).videos["vid1"].fps == 25.0


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("duration", "long", "'duration' must be a number"),
    ("duration", 0, "zero-length video"),
    ("duration", -3.0, "zero-length video"),
    ("fps", 0, "'fps' must be > 0"),
    ("subset", "", "'subset' must be a non-empty string"),
    ("annotations", {"label": "x"}, "'annotations' must be a list"),
])
def test_bad_video_values(field: str, value: object, expect: str) -> None:
    db = {"vid1": video()}
    db["vid1"][field] = value
    with pytest.raises(DataError, match=rf"video 'vid1'.*{expect}"):
        parse_annotations(dump(db))


def test_non_finite_number_in_json() -> None:
    text = dump({"vid1": video()}).replace('"duration": 20.0', '"duration": NaN')
    with pytest.raises(DataError, match="video 'vid1': field 'duration' must be finite"):
        parse_annotations(text)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{"database": {\n "a": }')
    with pytest.raises(DataError, match=r"bad.json: not valid JSON \(line 2"):
        load_annotations(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotation file not found"):
        load_annotations(tmp_path / "nope.json")


# --------------------------------------------------------------------------- segments

@pytest.mark.parametrize("seg", [[5.0, 5.0], [6.0, 2.0]])
@pytest.mark.parametrize("policy", ["clip", "reject"])
def test_end_not_after_start_always_rejected(seg: list[float], policy: str) -> None:
    db = {"vid1": video(anns=[("Jump", *seg)])}
    with pytest.raises(DataError, match=r"video 'vid1': annotations\[0\]: segment .* end <= start"):
        parse_annotations(dump(db), segment_policy=policy)


@pytest.mark.parametrize("seg", [["a", 2], [1.0], [1, 2, 3], "1-2"])
def test_malformed_segment(seg: object) -> None:
    db = {"vid1": video()}
    db["vid1"]["annotations"][0]["segment"] = seg
    with pytest.raises(DataError, match=r"video 'vid1': annotations\[0\]"):
        parse_annotations(dump(db))


def test_outside_duration_clip_warns(caplog: pytest.LogCaptureFixture) -> None:
    db = {"vid1": video(duration=20.0, anns=[("Jump", -1.0, 3.0), ("Jump", 18.0, 25.0),
                                             ("Jump", 21.0, 22.0), ("Jump", 5.0, 6.0)])}
    with caplog.at_level(logging.WARNING):
        ann = parse_annotations(dump(db), source="f.json", segment_policy="clip")
    np.testing.assert_array_equal(ann.videos["vid1"].segments,
                                  [[0.0, 3.0], [5.0, 6.0], [18.0, 20.0]])  # [21, 22] dropped
    assert "f.json: 3 segment(s) outside [0, duration] were clipped or dropped" in caplog.text


@pytest.mark.parametrize("seg", [[-0.5, 3.0], [18.0, 20.5]])
def test_outside_duration_reject(seg: list[float]) -> None:
    db = {"vid1": video(duration=20.0, anns=[("Jump", *seg)])}
    with pytest.raises(DataError, match=r"video 'vid1'.*outside \[0, 20.0\]"):
        parse_annotations(dump(db), segment_policy="reject")


def test_unknown_policy() -> None:
    with pytest.raises(DataError, match="segment_policy must be one of"):
        parse_annotations(dump({"a": video()}), segment_policy="ignore")


# --------------------------------------------------------------------------- ids and labels

def test_duplicate_video_id_in_raw_text() -> None:
    one = json.dumps(video())
    two = json.dumps(video("Test"))
    text = f'{{"database": {{"v1": {one}, "v2": {one}, "v1": {two}}}}}'
    assert len(json.loads(text)["database"]) == 2  # plain json.load hides the duplicate
    with pytest.raises(DataError, match=r"f.json: duplicate video id\(s\) \['v1'\]"):
        parse_annotations(text, source="f.json")


def test_duplicate_field_inside_annotation() -> None:
    text = dump({"v1": video(anns=[("Jump", 1.0, 2.0)])}).replace(
        '"label": "Jump"', '"label": "Jump", "label": "Throw"')
    with pytest.raises(DataError, match=r"duplicate field name\(s\) \['label'\]"):
        parse_annotations(text)


def test_unknown_label_against_class_list() -> None:
    db = {"v1": video(anns=[("Jump", 1.0, 2.0)]), "v2": video(anns=[("Swim", 1.0, 2.0)])}
    with pytest.raises(DataError, match=r"video 'v2': unknown label 'Swim' \(expected one of "
                                        r"the 2 classes \['Jump', 'Throw'\]"):
        parse_annotations(dump(db), classes=["Jump", "Throw"])
    ann = parse_annotations(dump(db), classes=["Swim", "Jump", "Throw"])  # given order is kept
    assert ann.class_index == {"Swim": 0, "Jump": 1, "Throw": 2}


def test_bad_label_type() -> None:
    db = {"v1": video()}
    db["v1"]["annotations"][0]["label"] = 3
    with pytest.raises(DataError, match=r"video 'v1': annotations\[0\]: field 'label' must be"):
        parse_annotations(dump(db))


def test_segments_sorted_and_labels_follow() -> None:
    db = {"v1": video(anns=[("Throw", 10.0, 12.0), ("Jump", 1.0, 2.0)])}
    v = parse_annotations(dump(db)).videos["v1"]
    assert v.labels == ["Jump", "Throw"]
    assert v.segments.dtype == np.float64 and v.segments.shape == (2, 2)


def test_input_not_mutated() -> None:
    db = {"v1": video(anns=[("Jump", -1.0, 2.0)])}
    before = copy.deepcopy(db)
    parse_annotations(dump(db))
    assert db == before


@pytest.mark.parametrize("vid", ["../../x", "/etc/passwd", "a/b", "a\\b", "a\x00b", "a\nb",
                                 "..", "."])
def test_video_id_that_could_leave_a_folder_is_refused(vid: str) -> None:
    """Ids become ``<root>/<id>.npy``: separators, '..', '/', NUL, control characters."""
    text = json.dumps({"database": {vid: video()}})
    with pytest.raises(DataError, match=r"gt\.json: 'database': video id .* is not a plain file "
                                        r"name"):
        parse_annotations(text, source="gt.json")


def test_classes_without_training_actions() -> None:
    db = {"a": video(anns=[("Jump", 1.0, 2.0)]), "b": video("Test", anns=[("Throw", 1.0, 2.0)])}
    ann = parse_annotations(json.dumps({"database": db}))
    assert ann.classes_without_actions("Validation") == ["Throw"]
    assert ann.classes_without_actions("Test") == ["Jump"]
