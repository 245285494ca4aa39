"""Feature extraction from raw videos: PyAV decoding + an I3D (Inception-v1 3D) encoder.

RGB only: each snippet (``window`` frames at the target ``fps``, every ``stride`` frames) gives
the 1024-d average-pooled ``Mixed_5c`` feature of I3D. Two-stream releases (e.g. the public
THUMOS14 I3D features, 2048-d) concatenate RGB ⊕ optical flow (TV-L1); flow is not computed
here (TV-L1 is far too slow on CPU), so these features are the RGB half of such releases.
See :mod:`amnet.extract.video` for the exact frame/snippet timing.
"""

from amnet.extract.extractor import (
    EncoderInfo,
    ExtractionReport,
    VideoFeatures,
    build_encoder,
    extract_video,
    list_videos,
    read_manifest,
    run_extraction,
)
from amnet.extract.i3d import I3D, load_i3d
from amnet.extract.video import (
    ResampledVideo,
    VideoDecodeError,
    count_output_frames,
    count_snippets,
    iter_windows,
    probe_video,
    snippet_centers,
)

__all__ = [
    "I3D", "EncoderInfo", "ExtractionReport", "ResampledVideo", "VideoDecodeError",
    "VideoFeatures", "build_encoder", "count_output_frames", "count_snippets", "extract_video",
    "iter_windows", "list_videos", "load_i3d", "probe_video", "read_manifest",
    "run_extraction", "snippet_centers",
]
