"""Decoding, fps resampling, resize/crop, sliding windows and bad files (amnet.extract.video)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from extract_helpers import LEVEL, frame_index, write_video

from amnet.data.timing import expected_num_snippets, snippet_to_seconds
from amnet.errors import DataError
from amnet.extract.video import (
    ResampledVideo,
    VideoDecodeError,
    count_output_frames,
    count_snippets,
    iter_windows,
    probe_video,
    snippet_centers,
)

# --------------------------------------------------------------------------- real videos


@pytest.mark.parametrize(("name", "n_source"), [("tennis26", 339), ("highjump", 726)])
def test_real_video_native_fps_is_identity(real_videos, name, n_source):
    info = probe_video(real_videos[name])
    assert (info.width, info.height, info.codec) == (320, 180, "h264")
    assert info.fps == pytest.approx(30.0)
    video = ResampledVideo(real_videos[name], fps=30.0, resize=72, crop=64)
    n = 0
    for frame in video:
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        n += 1
    # microsecond-rounded pts (33333/33334) must not drop or repeat a frame at 30 fps
    assert n == video.n_frames == video.source_frames == n_source
    assert video.duration == pytest.approx(n_source / 30, abs=1e-5)


@pytest.mark.parametrize(("fps", "stride", "window"),
                         [(30.0, 4, 16), (10.0, 16, 16), (25.0, 8, 32), (29.97, 1, 8)])
def test_real_video_snippet_counts(real_videos, fps, stride, window):
    video = ResampledVideo(real_videos["tennis26"], fps=fps, resize=40, crop=32)
    windows = list(iter_windows(video, window, stride))
    n_frames = count_output_frames(video.duration, fps)  # 11.300001 s from the timestamps
    assert video.n_frames == n_frames
    assert abs(n_frames - 339 / 30 * fps) <= 0.5 + 1e-3
    assert len(windows) == count_snippets(n_frames, window, stride)
    assert len(windows) == (n_frames - window) // stride + 1
    # same count as the data layer's timing convention for a video of this duration
    assert len(windows) == expected_num_snippets(video.duration, fps, stride, window)
    assert all(w.shape == (window, 32, 32, 3) for w in windows)


def test_real_video_downsampled_frames_are_source_frames(real_videos):
    """At 10 fps from 30, output frame k is source frame 3k+1 (on screen at (k+½)/10 s)."""
    native = list(itertools.islice(ResampledVideo(real_videos["highjump"], 30, 40, 32), 60))
    slow = list(itertools.islice(ResampledVideo(real_videos["highjump"], 10, 40, 32), 20))
    for k, frame in enumerate(slow):
        np.testing.assert_array_equal(frame, native[3 * k + 1])


def test_decoding_streams(real_videos):
    """Taking a few frames decodes only a few source frames: the video is never read whole."""
    video = ResampledVideo(real_videos["highjump"], fps=30, resize=40, crop=32)
    first = list(itertools.islice(iter(video), 5))
    assert len(first) == 5
    assert video.source_frames < 30  # of 726


# --------------------------------------------------------------------------- encoded here


@pytest.mark.parametrize("fps", [25, 10, 50, 12, 7.5])
def test_resampling_picks_the_frame_on_screen_at_each_midpoint(make_video, fps):
    path = make_video("grey.mp4", n_frames=50, fps=25)  # 2.0 s
    shown = [frame_index(f) for f in ResampledVideo(path, fps=fps, resize=48, crop=48)]
    assert len(shown) == count_output_frames(2.0, fps) == math.ceil(2.0 * fps - 0.5)
    expected = [math.floor((k + 0.5) * 25 / fps) for k in range(len(shown))]
    assert shown == expected


@pytest.mark.parametrize(("fps", "stride", "window"),
                         [(25, 4, 16), (25, 16, 16), (10, 2, 8), (50, 5, 12), (25, 3, 50)])
def test_windows_cover_the_documented_frames(make_video, fps, stride, window):
    """Window i holds output frames [i*stride, i*stride + window), centred at
    (i*stride + window/2)/fps seconds; leftover tail frames (< stride) are not covered."""
    path = make_video("grey.mp4", n_frames=50, fps=25)
    frames = [frame_index(f) for f in ResampledVideo(path, fps, 48, 48)]
    windows = list(iter_windows(ResampledVideo(path, fps, 48, 48), window, stride))
    assert len(windows) == count_snippets(len(frames), window, stride)
    for i, w in enumerate(windows):
        assert [frame_index(f) for f in w] == frames[i * stride: i * stride + window]
    centres = snippet_centers(len(windows), fps, stride, window)
    np.testing.assert_allclose(centres, snippet_to_seconds(np.arange(len(windows)), fps,
                                                           stride, window))
    # the centre time lies within the display time of the source frames the window shows
    for i, c in enumerate(centres):
        shown = [frame_index(f) for f in windows[i]]
        assert min(shown) / 25 <= c <= (max(shown) + 1) / 25
    uncovered = len(frames) - ((len(windows) - 1) * stride + window)
    assert 0 <= uncovered < stride


def test_short_video_gives_one_padded_window(make_video):
    path = make_video("short.mp4", n_frames=10, fps=25)
    windows = list(iter_windows(ResampledVideo(path, 25, 48, 48), window=16, stride=4))
    assert len(windows) == 1 == count_snippets(10, 16, 4)
    assert [frame_index(f) for f in windows[0]] == list(range(10)) + [9] * 6


def test_iter_windows_keeps_a_bounded_buffer():
    pulled = 0

    def endless():
        nonlocal pulled
        for j in itertools.count():
            pulled += 1
            yield np.full((2, 2, 3), j % 256, np.uint8)

    windows = list(itertools.islice(iter_windows(endless(), window=16, stride=4), 3))
    assert [int(w[0, 0, 0, 0]) for w in windows] == [0, 4, 8]
    assert pulled == 16 + 2 * 4  # exactly what the third window needs, nothing more


def test_resize_short_side_then_centre_crop(tmp_path):
    """96×64 frames with a horizontal ramp (value 2·x): short side 64 → 32 gives 48×32, the
    centre 32×32 keeps source columns 16..79, so the crop's ramp runs from ~34 to ~158."""
    ramp = np.broadcast_to((2 * np.arange(96)).astype(np.uint8)[None, None, :, None],
                           (5, 64, 96, 3)).copy()
    path = write_video(tmp_path / "ramp.mp4", ramp, 25)
    frame = next(iter(ResampledVideo(path, 25, resize=32, crop=32)))
    assert frame.shape == (32, 32, 3)
    cols = frame.mean(axis=(0, 2))
    assert cols[0] == pytest.approx(2 * 17, abs=6)
    assert cols[-1] == pytest.approx(2 * 78, abs=6)
    assert np.all(np.diff(cols) >= -1)  # still a rising ramp: not flipped or shuffled
    with pytest.raises(ValueError, match="crop"):
        ResampledVideo(path, 25, resize=32, crop=48)


def test_grey_levels_survive_decoding(make_video):
    """Sanity of the test video itself: frame j decodes to level 5j (±2)."""
    path = make_video("grey.mp4", n_frames=50, fps=25)
    means = [float(f.mean()) for f in ResampledVideo(path, 25, 48, 48)]
    np.testing.assert_allclose(means, LEVEL * np.arange(50), atol=2)


# --------------------------------------------------------------------------- bad files


def test_garbage_bytes_name_the_file(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match=r"garbage\.mp4") as e:
        list(ResampledVideo(bad, 25, 48, 48))
    assert isinstance(e.value, DataError)
    with pytest.raises(VideoDecodeError, match=r"garbage\.mp4"):
        probe_video(bad)


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match=r"nothere\.mp4: file not found"):
        list(ResampledVideo(tmp_path / "nothere.mp4", 25, 48, 48))


def test_truncated_video_is_an_error_not_a_short_video(real_videos, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(real_videos["highjump"].read_bytes()[:800_000])  # ~1/3 of the file
    with pytest.raises(VideoDecodeError, match=r"cut\.mp4: truncated"):
        list(ResampledVideo(cut, 30, 40, 32))


def test_corrupted_stream_fails_mid_video(real_videos, tmp_path):
    data = bytearray(real_videos["tennis26"].read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(50_000, len(data), 2000):
        data[pos] = int(rng.integers(0, 256))
    bad = tmp_path / "flipped.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match=r"flipped\.mp4"):
        list(ResampledVideo(bad, 30, 40, 32))


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        probe_video(path)


def test_count_helpers():
    assert count_snippets(0, 16, 4) == 0
    assert count_snippets(15, 16, 4) == 1
    assert count_snippets(16, 16, 4) == 1
    assert count_snippets(19, 16, 4) == 1
    assert count_snippets(20, 16, 4) == 2
    assert count_output_frames(2.0, 25) == 50
    assert count_output_frames(0.01, 25) == 0  # shorter than half a frame
