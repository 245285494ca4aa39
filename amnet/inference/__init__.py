"""From AMNet's per-point outputs to scored detections in seconds (paper §3.5).

Pipeline of :func:`postprocess`, batched over the videos of a batch on the output's device:

1. confidence per point and class, Eq. 14 (``sigmoid(ŷ)·tanh(m̂)``, or an ablation variant of
   Table 4), padded points (``output.mask`` False) dropped;
2. optional fusion with external video-level class scores (ActivityNet, §4.2);
3. candidates above ``pre_nms_thresh``, the ``pre_nms_topk`` best per video;
4. boundaries by Eq. 13, ``t_s = i − d_s``, ``t_e = i + d_e`` in snippets, then to seconds as
   ``(t · stride + window / 2) / fps``, clipped to [0, duration], shorter than
   ``min_duration`` dropped;
5. class-aware Gaussian Soft-NMS, at most ``max_detections`` per video;
6. optional boundary voting (``voting_thresh``): each kept detection's boundaries become the
   weighted mean of the overlapping candidates of its class (:mod:`amnet.inference.voting`).

Times are in seconds at the edges (:class:`Detections`, results JSON), snippets inside.
"""

from amnet.inference.decode import confidence, decode_segments
from amnet.inference.fusion import load_video_scores
from amnet.inference.nms import soft_nms
from amnet.inference.postprocess import postprocess
from amnet.inference.results import Detections, to_results_json

__all__ = [
    "Detections",
    "confidence",
    "decode_segments",
    "load_video_scores",
    "postprocess",
    "soft_nms",
    "to_results_json",
]
