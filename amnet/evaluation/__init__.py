"""Scoring detections: tIoU, ActivityNet-protocol mAP, error analysis, plots."""

from amnet.evaluation.map import (
    ANET_TIOU,
    THUMOS_TIOU,
    MAPResult,
    default_tiou,
    evaluate_detections,
    evaluate_files,
    is_thumos_style,
)
from amnet.evaluation.tiou import one_vs_many_tiou, pairwise_tiou

__all__ = [
    "ANET_TIOU",
    "THUMOS_TIOU",
    "MAPResult",
    "default_tiou",
    "evaluate_detections",
    "evaluate_files",
    "is_thumos_style",
    "one_vs_many_tiou",
    "pairwise_tiou",
]
