"""Videos → features: one video, a folder, the per-video cache, bad videos, the manifest."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from extract_helpers import write_video

from amnet.config import ExtractConfig
from amnet.errors import ConfigError, DataError, ModelLoadError
from amnet.extract import (
    ResampledVideo,
    build_encoder,
    extract_video,
    iter_windows,
    read_manifest,
    run_extraction,
)
from amnet.extract.extractor import to_input
from amnet.io import sha256_file

# tiny but real: the I3D graph at a quarter of its width on 32×32 crops
SMALL = {"fps": 25.0, "stride": 4, "window": 8, "resize": 40, "crop": 32, "width": 0.25,
         "allow_random_init": True, "device": "cpu", "batch_size": 4}


def config(tmp_path: Path, **kw) -> ExtractConfig:
    where = {"video_dir": str(tmp_path / "videos"), "out_dir": str(tmp_path / "out")}
    return ExtractConfig(**{**where, **SMALL, **kw})


def garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes())
    return path


def test_to_input_scales_rgb_to_minus_one_one():
    batch = np.zeros((1, 2, 1, 1, 3), np.uint8)
    batch[0, 1] = 255
    batch[0, 0, 0, 0] = (0, 128, 255)
    x = to_input(batch, torch.device("cpu"))
    assert x.shape == (1, 3, 2, 1, 1) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0, 0], torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]))
    torch.testing.assert_close(x[0, :, 1, 0, 0], torch.ones(3))


def test_extract_video_shape_dtype_and_determinism(make_video, tmp_path):
    path = make_video("a.mp4", n_frames=50, fps=25)
    model, _ = build_encoder(config(tmp_path))
    kw = {k: SMALL[k] for k in ("fps", "stride", "window", "resize", "crop", "batch_size")}
    res = extract_video(path, model, **kw)
    assert res.features.shape == ((50 - 8) // 4 + 1, 256) and res.features.dtype == np.float32
    assert (res.n_frames, res.padded) == (50, False)
    assert res.duration == pytest.approx(2.0)
    again = extract_video(path, model, **kw, prefetch=False)
    np.testing.assert_array_equal(res.features, again.features)
    assert np.isfinite(res.features).all()
    assert not np.allclose(res.features[0], res.features[-1])  # dark vs bright windows

    # the same numbers as the documented pipeline done by hand: windows → [-1, 1] → I3D
    windows = np.stack(list(iter_windows(ResampledVideo(path, 25, 40, 32), 8, 4)))
    with torch.inference_mode():
        manual = model(to_input(windows, torch.device("cpu"))).numpy()
    np.testing.assert_allclose(res.features, manual, rtol=1e-4, atol=1e-5)


def test_folder_layout_and_manifest(make_video, real_videos, tmp_path):
    videos = tmp_path / "videos"
    make_video("clip_a.mp4", n_frames=50, folder=videos)
    make_video("clip_b.mp4", n_frames=30, fps=15, folder=videos)
    make_video("tiny.mp4", n_frames=5, folder=videos)  # shorter than one window
    garbage(videos / "broken.mp4")  # fails to open
    # decodes for a while, then fails (error raised in the decode thread, after snippets)
    (videos / "cut.mp4").write_bytes(real_videos["tennis26"].read_bytes()[:350_000])
    (videos / "notes.txt").write_text("not a video")
    cfg = config(tmp_path)
    report = run_extraction(cfg)

    assert sorted(report.extracted) == ["clip_a", "clip_b", "tiny"]
    assert [s["video"] for s in report.skipped] == ["broken", "cut"]
    assert "truncated" in report.skipped[1]["error"]
    out = Path(cfg.out_dir)
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_a.npy", "clip_b.npy", "manifest.json", "tiny.npy"]  # no temp files left behind

    m = json.loads((out / "manifest.json").read_text())
    assert m["snippet_seconds"] == "(i * stride + window / 2) / fps"
    assert m["encoder"]["random_init"] and "RANDOM" in m["warning"]
    assert m["skipped"][0]["path"].endswith("broken.mp4") and "broken.mp4" in m["skipped"][0][
        "error"]
    a = m["videos"]["clip_a"]
    feats = np.load(out / "clip_a.npy")
    assert feats.dtype == np.float32 and feats.shape == (11, 256)
    assert a["shape"] == [11, 256] and a["dtype"] == "float32" and a["n_snippets"] == 11
    assert (a["fps"], a["stride"], a["window"]) == (25.0, 4, 8)
    assert a["duration"] == pytest.approx(2.0) and a["n_frames"] == 50 and not a["padded"]
    assert a["sha256"] == sha256_file(out / "clip_a.npy")
    src = videos / "clip_a.mp4"
    assert a["source"]["path"] == str(src) and a["source"]["size"] == src.stat().st_size
    assert a["source"]["mtime_ns"] == src.stat().st_mtime_ns
    assert a["source"]["sha256"] == sha256_file(src)
    # clip_b: 2 s at 15 fps resampled to the target 25 fps → 50 frames, same timing
    b = m["videos"]["clip_b"]
    assert (b["n_frames"], b["n_snippets"], b["fps"]) == (50, 11, 25.0)
    assert m["videos"]["tiny"]["padded"] and m["videos"]["tiny"]["n_snippets"] == 1

    model, _ = build_encoder(cfg)  # same seed → same random weights
    direct = extract_video(src, model, fps=25, stride=4, window=8, resize=40, crop=32)
    np.testing.assert_allclose(feats, direct.features, rtol=1e-5, atol=1e-6)


def test_cache_extracts_only_what_changed(make_video, tmp_path):
    videos = tmp_path / "videos"
    make_video("a.mp4", n_frames=40, folder=videos)
    make_video("b.mp4", n_frames=40, folder=videos)
    cfg = config(tmp_path)
    model_info = build_encoder(cfg)
    out = Path(cfg.out_dir)

    first = run_extraction(cfg, encoder=model_info)
    assert sorted(first.extracted) == ["a", "b"]
    stamp = (out / "a.npy").stat().st_mtime_ns

    second = run_extraction(cfg, encoder=model_info)
    assert second.extracted == [] and sorted(second.cached) == ["a", "b"]
    assert (out / "a.npy").stat().st_mtime_ns == stamp  # not rewritten

    make_video("c.mp4", n_frames=40, folder=videos)
    third = run_extraction(cfg, encoder=model_info)
    assert third.extracted == ["c"] and sorted(third.cached) == ["a", "b"]

    # same bytes, new mtime (a fresh clone / dvc checkout): content hash says unchanged
    os.utime(videos / "a.mp4", ns=(1_000_000_000, 1_000_000_000))
    assert run_extraction(cfg, encoder=model_info).extracted == []
    assert read_manifest(out)["videos"]["a"]["source"]["mtime_ns"] == 1_000_000_000

    # new content → re-extracted; a damaged feature file → re-extracted
    write_video(videos / "b.mp4", np.full((45, 48, 64, 3), 200, np.uint8), 25)
    (out / "c.npy").write_bytes(b"damaged")
    assert sorted(run_extraction(cfg, encoder=model_info).extracted) == ["b", "c"]
    assert np.load(out / "c.npy").shape == (9, 256)

    # a removed video loses its features
    (videos / "c.mp4").unlink()
    report = run_extraction(cfg, encoder=model_info)
    assert report.removed == ["c"] and not (out / "c.npy").exists()
    assert sorted(read_manifest(out)["videos"]) == ["a", "b"]

    # other settings → everything again; --force too
    assert sorted(run_extraction(replace(cfg, stride=2)).extracted) == ["a", "b"]
    assert sorted(run_extraction(replace(cfg, stride=2), force=True).extracted) == ["a", "b"]


def test_on_error_fail_stops_but_keeps_earlier_features(make_video, tmp_path):
    videos = tmp_path / "videos"
    make_video("a_good.mp4", n_frames=30, folder=videos)
    garbage(videos / "b_broken.mp4")
    make_video("c_later.mp4", n_frames=30, folder=videos)
    cfg = config(tmp_path, on_error="fail")
    with pytest.raises(DataError, match=r"b_broken\.mp4.*on_error=fail.*1 videos"):
        run_extraction(cfg)
    out = Path(cfg.out_dir)
    m = read_manifest(out)
    assert list(m["videos"]) == ["a_good"] and (out / "a_good.npy").is_file()
    assert [s["video"] for s in m["skipped"]] == ["b_broken"]
    assert not (out / "c_later.npy").exists()
    # skip mode on the same folder goes on past it, reusing a_good
    report = run_extraction(replace(cfg, on_error="skip"))
    assert report.cached == ["a_good"] and report.extracted == ["c_later"]


def test_checkpoint_encoder_and_its_identity(make_video, tmp_path):
    make_video("a.mp4", n_frames=30, folder=tmp_path / "videos")
    random_cfg = config(tmp_path)
    model, info = build_encoder(random_cfg)
    assert info.random_init and info.identity == "random-init:seed=0:width=0.25"
    ckpt = tmp_path / "rgb_small.pt"
    torch.save(model.state_dict(), ckpt)

    cfg = config(tmp_path, checkpoint=str(ckpt), allow_random_init=False,
                 out_dir=str(tmp_path / "out_ckpt"))
    run_extraction(cfg)
    m = read_manifest(cfg.out_dir)
    assert m["encoder"]["sha256"] == sha256_file(ckpt) and not m["encoder"]["random_init"]
    assert "warning" not in m
    run_extraction(random_cfg)
    np.testing.assert_array_equal(np.load(tmp_path / "out_ckpt" / "a.npy"),
                                  np.load(tmp_path / "out" / "a.npy"))

    # other weights in the same file → the cache notices
    torch.manual_seed(7)
    other, _ = build_encoder(replace(random_cfg, seed=7))
    torch.save(other.state_dict(), ckpt)
    assert run_extraction(cfg).extracted == ["a"]


def test_configuration_errors(make_video, tmp_path):
    make_video("a.mp4", n_frames=30, folder=tmp_path / "videos")
    with pytest.raises(ConfigError, match=r"extract\.checkpoint' is empty.*allow_random_init"):
        run_extraction(config(tmp_path, allow_random_init=False))
    with pytest.raises(ConfigError, match="flow"):
        run_extraction(config(tmp_path, flow=True))
    with pytest.raises(ConfigError, match=r"extract\.crop"):
        run_extraction(config(tmp_path, crop=64))
    with pytest.raises(ModelLoadError, match="not found"):
        run_extraction(config(tmp_path, checkpoint=str(tmp_path / "none.pt")))
    with pytest.raises(DataError, match="not a folder"):
        run_extraction(config(tmp_path, video_dir=str(tmp_path / "nope")))
    make_video("a.avi", n_frames=30, folder=tmp_path / "videos")
    with pytest.raises(DataError, match="share the id 'a'"):
        run_extraction(config(tmp_path))
    assert not (tmp_path / "out" / "a.npy").exists()


def test_unreadable_manifest_means_extract_again(make_video, tmp_path):
    make_video("a.mp4", n_frames=30, folder=tmp_path / "videos")
    cfg = config(tmp_path)
    run_extraction(cfg)
    (Path(cfg.out_dir) / "manifest.json").write_text("{not json")
    assert run_extraction(cfg).extracted == ["a"]
    assert read_manifest(cfg.out_dir)["videos"]["a"]["n_snippets"] == 6


@pytest.mark.parametrize(("entry_file", "vid", "expect"), [
    ("../victim.txt", "gone", r"video 'gone': field 'file' '\.\./victim\.txt' is not a plain"),
    ("ABS", "gone", r"video 'gone': field 'file' '/.*victim\.txt' is not a plain file name"),
    ("x.npy", "../../x", r"video id '\.\./\.\./x' is not a plain file name"),
])
def test_manifest_entries_never_delete_outside_out_dir(tmp_path, entry_file, vid, expect):
    """A hostile manifest.json names a file outside out_dir for a video that is gone: refused
    before anything is deleted (it used to unlink the victim)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "videos").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    name = str(victim) if entry_file == "ABS" else entry_file
    (out / "manifest.json").write_text(json.dumps(
        {"format": "amnet-extract/1", "skipped": [], "videos": {vid: {"file": name}}}))
    with pytest.raises(DataError, match=expect):
        run_extraction(config(tmp_path))
    assert victim.read_text() == "precious"


def test_video_file_name_that_cannot_be_an_id(tmp_path):
    garbage(tmp_path / "videos" / "a\nb.mp4")
    with pytest.raises(DataError, match=r"feature file of video 'a\\nb'.*not a plain file name"):
        run_extraction(config(tmp_path))
    assert not (tmp_path / "out").exists()  # refused before anything is created
