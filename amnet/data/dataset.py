"""Torch dataset over a prepared feature set, training crops, and padded batching.

Layout read (the public THUMOS14 / ActivityNet I3D release layout, also what
``amnet.data.synthetic`` writes): ``<root>/annotations.json`` (ActivityNet-style),
``<root>/<video_id>.npy`` (T, C) and optionally ``<root>/manifest.json``.

Everything (annotation fields, every feature file of the split, the manifest) is validated in
``TALDataset.__init__``, so bad input stops the run before the first training step.

Items are ``(C, T)`` (Conv1d layout); segments are in snippet units (fractional snippet index
of the boundary, see :mod:`amnet.data.timing`) relative to the item's first snippet ``offset``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from amnet.config import DataConfig
from amnet.data.annotations import (
    AnnotationSet,
    VideoAnnotation,
    load_annotations,
    scoring_ground_truth,
)
from amnet.data.features import feature_path, load_feature_file, read_header
from amnet.data.manifest import ANNOTATIONS_FILE, MANIFEST_FILE, check_video, read_manifest
from amnet.data.split import PARTS, Split, split_videos
from amnet.data.timing import expected_num_snippets, seconds_to_snippet
from amnet.errors import DataError
from amnet.progress import progress

__all__ = ["TALDataset", "collate", "crop_window", "train_val_datasets"]

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 2 << 30  # keep features in RAM below this (synthetic / small sets)
CROP_TRIALS = 10  # random crops tried before falling back to one centred on an action


class TALDataset(Dataset):
    """Videos of one split, each item one video's features and ground truth.

    ``training=True``: random crops of at most ``cfg.max_seq_len`` snippets (deterministic from
    ``(seed, epoch, index)``; call :meth:`set_epoch` each epoch) and videos without actions are
    left out. ``training=False``: full-length videos, every video of the split.

    ``classes`` fixes the class list (e.g. the one a model was trained with); default: the
    manifest's list if ``root`` has one, else the sorted labels of the annotation file.
    ``cache``: keep float32 features in memory (``None`` = when the split is under 2 GiB).
    ``part``: ``all`` videos of ``subset``, or its ``train`` / ``val`` part
    (:mod:`amnet.data.split`: ``cfg.val_fraction`` held out, seeded by ``cfg.val_seed``).
    ``warn_untrained``: warn (once) about classes without a training action; data-parallel
    workers pass it on one rank only.
    """

    def __init__(self, cfg: DataConfig, subset: str, *, training: bool,
                 root: str | Path | None = None, seed: int = 0,
                 classes: list[str] | None = None, cache: bool | None = None,
                 part: str = "all", warn_untrained: bool = True) -> None:
        if part not in PARTS:
            raise ValueError(f"TALDataset: part must be one of {PARTS}, got {part!r}")
        self.cfg = cfg
        self.root = Path(root if root is not None else cfg.root)
        self.subset_name = subset
        self.part = part
        self.training = training
        self.seed = int(seed)
        self.epoch = 0
        if not self.root.is_dir():
            raise DataError(f"feature folder not found: {self.root} (expected <root>/"
                            f"{ANNOTATIONS_FILE} and <root>/<video_id>.npy; run `amnet features`)")
        self.manifest = read_manifest(self.root)
        if self.manifest is not None:
            self._check_manifest_geometry()
            if classes is None:
                classes = list(self.manifest["classes"])
        self.annotations: AnnotationSet = load_annotations(
            self.root / ANNOTATIONS_FILE, default_fps=cfg.default_fps,
            segment_policy=cfg.segment_policy, classes=classes)
        self.classes: list[str] = self.annotations.classes
        if len(self.classes) > cfg.num_classes:
            raise DataError(f"{self.root / ANNOTATIONS_FILE}: {len(self.classes)} classes but "
                            f"data.num_classes={cfg.num_classes} (expected at most that many)")
        videos = self._select_part(self.annotations.subset(subset))
        if training and warn_untrained:  # False on all but one of several workers
            self._warn_untrained_classes(subset)
        self._feats: dict[str, np.ndarray] = {}
        self._load_all(videos, cache)
        self._targets = {v.video_id: self._to_snippets(v) for v in videos}
        if training:
            kept = [v for v in videos if len(self._targets[v.video_id][2])]
            if len(kept) < len(videos):
                log.info("%s split %r: %d of %d videos have no action on the snippet grid and "
                         "are left out of training", self.root, subset, len(videos) - len(kept),
                         len(videos))
            if not kept:
                raise DataError(f"{self.root / ANNOTATIONS_FILE}: split {subset!r} has no "
                                "annotated action to train on (expected at least one)")
            videos = kept
        self.videos: list[VideoAnnotation] = videos
        self.video_ids = [v.video_id for v in videos]

    # ----------------------------------------------------------------------- scoring

    def scoring_ground_truth(self) -> dict[str, Any]:
        """The ground truth this split is scored against: the annotation file as given
        (:func:`~amnet.data.annotations.scoring_ground_truth`), nothing clipped or dropped,
        so the number equals ``amnet eval <root>/annotations.json``'s on the same predictions.
        """
        if self.part == "all":
            return scoring_ground_truth(self.root / ANNOTATIONS_FILE)
        return scoring_ground_truth(self.root / ANNOTATIONS_FILE, self.subset_name,
                                    self.part_ids)

    def _select_part(self, videos: list[VideoAnnotation]) -> list[VideoAnnotation]:
        """The videos of ``self.part`` of the subset (:mod:`amnet.data.split`)."""
        self.split: Split | None = None
        if self.part == "all":
            self.part_ids = [v.video_id for v in videos]
            return videos
        self.split = split = split_videos(videos, self.cfg.val_fraction, self.cfg.val_seed)
        ids = split.val if self.part == "val" else split.train
        if not ids:
            raise DataError(f"{self.root / ANNOTATIONS_FILE}: split {self.subset_name!r} has no "
                            f"video for its {self.part!r} part (data.val_fraction="
                            f"{self.cfg.val_fraction}, {len(videos)} videos; expected at least "
                            "two videos of one class, or a larger data.val_fraction)")
        self.part_ids = list(ids)
        keep = set(ids)
        log.info("%s split %r, %s part: %d of %d videos (data.val_fraction=%g, val_seed=%d)",
                 self.root, self.subset_name, self.part, len(ids), len(videos),
                 self.cfg.val_fraction, self.cfg.val_seed)
        return [v for v in videos if v.video_id in keep]

    # ----------------------------------------------------------------------- validation

    def _warn_untrained_classes(self, subset: str) -> None:
        """A class with no action in the training split (e.g. present only in the test
        subset) gets a head trained on nothing: say so, naming it (once per dataset)."""
        empty = self.annotations.classes_without_actions(subset)
        if empty:
            where: dict[str, set[str]] = {c: set() for c in empty}
            for v in self.annotations.videos.values():
                for lab in v.labels:
                    if lab in where:
                        where[lab].add(v.subset)
            named = ", ".join(f"{c!r} (only in {', '.join(map(repr, sorted(where[c])))})"
                              if where[c] else f"{c!r} (no action at all)" for c in empty)
            log.warning("%s: %d of %d classes have no action in the training split %r and "
                        "will be learned from nothing: %s", self.root / ANNOTATIONS_FILE,
                        len(empty), len(self.classes), subset, named)

    def _check_manifest_geometry(self) -> None:
        m, cfg, where = self.manifest, self.cfg, self.root / MANIFEST_FILE
        assert m is not None
        for key in ("stride", "window", "feature_dim"):
            if int(m[key]) != int(getattr(cfg, key)):
                raise DataError(f"{where}: features were prepared with {key}={m[key]} but "
                                f"data.{key}={getattr(cfg, key)} (expected the same)")

    def _load_all(self, videos: list[VideoAnnotation], cache: bool | None) -> None:
        """Validate every feature file of the split (and its manifest entry); maybe cache."""
        if cache is None:
            total = 0
            for v in videos:
                shape, _ = read_header(feature_path(self.root, v.video_id), v.video_id)
                total += int(np.prod(shape)) * 4
            cache = total <= CACHE_LIMIT_BYTES
        self._cache = cache
        off: list[str] = []
        for v in progress(videos, desc=f"check {self.subset_name} features", unit="video",
                          leave=False):
            path = feature_path(self.root, v.video_id)
            arr, sha = load_feature_file(path, v.video_id, feature_dim=self.cfg.feature_dim,
                                         with_sha256=self.manifest is not None)
            if self.manifest is not None:
                shape, dtype = read_header(path, v.video_id)
                check_video(self.manifest, self.root, v.video_id, shape, str(dtype), sha)
            expected = expected_num_snippets(v.duration, v.fps, self.cfg.stride, self.cfg.window)
            if not expected / 2 - 2 <= len(arr) <= 2 * expected + 2:
                off.append(f"{v.video_id}: {len(arr)} snippets, ~{expected} expected")
            if cache:
                self._feats[v.video_id] = arr
        if off:  # a wrong stride/fps shifts every boundary: make it loud, but resized
            # releases (fixed T per video) are legitimate, so it is not an error.
            log.warning("%s: %d video(s) whose feature length disagrees >2x with duration*fps/"
                        "stride (check data.stride, data.window, fps), e.g. %s", self.root,
                        len(off), "; ".join(off[:3]))

    def _to_snippets(self, v: VideoAnnotation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segments in snippet units, labels, grid-clipped mask) for one video."""
        t = self._length(v.video_id)
        seg = seconds_to_snippet(v.segments, v.fps, self.cfg.stride, self.cfg.window)
        labels = self.annotations.labels_to_index(v)
        clipped = np.clip(seg, 0.0, float(t))
        on_grid = np.flatnonzero(clipped[:, 1] > clipped[:, 0])
        return seg.astype(np.float32), labels, on_grid

    def _length(self, vid: str) -> int:
        if vid in self._feats:
            return len(self._feats[vid])
        return read_header(feature_path(self.root, vid), vid)[0][0]

    def _features(self, vid: str) -> np.ndarray:
        if vid in self._feats:
            return self._feats[vid]
        return load_feature_file(feature_path(self.root, vid), vid,
                                 feature_dim=self.cfg.feature_dim)[0]

    # ----------------------------------------------------------------------- items

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (same epoch, seed and index → same crop)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        v = self.videos[i]
        feats = self._features(v.video_id)
        seg, labels, on_grid = self._targets[v.video_id]
        offset = 0
        if self.training:
            rng = np.random.default_rng([self.seed % (1 << 63), self.epoch, i])
            seg = np.clip(seg[on_grid], 0.0, float(len(feats)))
            offset, length, keep, seg = crop_window(
                seg, len(feats), self.cfg.max_seq_len, self.cfg.crop_ratio_min,
                self.cfg.trunc_thresh, rng)
            feats = feats[offset:offset + length]
            labels = labels[on_grid][keep]
        return {
            "video_id": v.video_id,
            "feats": torch.from_numpy(np.ascontiguousarray(feats.T)),
            "segments": torch.from_numpy(np.ascontiguousarray(seg, dtype=np.float32)),
            "labels": torch.from_numpy(np.asarray(labels, dtype=np.int64)),
            "fps": float(v.fps),
            "duration": float(v.duration),
            "stride": int(self.cfg.stride),
            "window": int(self.cfg.window),
            "offset": int(offset),
            "length": len(feats),
        }


def train_val_datasets(cfg: DataConfig, *, seed: int, validation: bool = True,
                       root: str | Path | None = None, warn_untrained: bool = True
                       ) -> tuple[TALDataset, TALDataset | None]:
    """(training dataset with crops, validation dataset of full videos or None).

    Both come from ``cfg.train_subset``: training reads its ``train`` part, validation its
    ``val`` part (:mod:`amnet.data.split`), so training never sees a validation video. With
    ``cfg.val_fraction == 0`` training reads the whole subset and there is no validation
    dataset (nor with ``validation=False``, or when no class has two videos to hold one out:
    a warning); the test subset is never a stand-in for it.
    """
    held_out = cfg.val_fraction > 0
    train_ds = TALDataset(cfg, cfg.train_subset, training=True, seed=seed, root=root,
                          part="train" if held_out else "all", warn_untrained=warn_untrained)
    if held_out and train_ds.split is not None and not train_ds.split.val:
        log.warning("%s split %r: no class has two videos, so data.val_fraction=%g holds none "
                    "out: training without a validation split", train_ds.root,
                    cfg.train_subset, cfg.val_fraction)
        return train_ds, None
    val_ds = None
    if validation and held_out:
        val_ds = TALDataset(cfg, cfg.train_subset, training=False, root=root,
                            classes=train_ds.classes, part="val")
    return train_ds, val_ds


def crop_window(segments: np.ndarray, length: int, max_seq_len: int, crop_ratio_min: float,
                trunc_thresh: float, rng: np.random.Generator
                ) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Pick a training window and cut the actions to it (ActionFormer-style truncation).

    ``segments`` (N, 2), snippet units inside ``[0, length]``. The window is ``max_seq_len``
    snippets for longer videos, else a random ``[crop_ratio_min, 1]`` share of the video. An
    action survives if at least ``trunc_thresh`` of it lies in the window (then it is cut to
    the window). Up to ``CROP_TRIALS`` random starts are tried until one keeps an action; then a
    window centred on a random action is taken, keeping at least the best-covered action.

    Returns ``(offset, crop_len, keep_index, segments_relative_to_offset)``.
    """
    if length <= max_seq_len:
        low = max(round(crop_ratio_min * length), 1)
        crop = int(rng.integers(low, length + 1))
    else:
        crop = max_seq_len
    lengths = segments[:, 1] - segments[:, 0]

    def cut(start: int) -> tuple[np.ndarray, np.ndarray]:
        s = np.maximum(segments[:, 0], start)
        e = np.minimum(segments[:, 1], start + crop)
        inside = np.clip(e - s, 0.0, None)
        cover = np.where(lengths > 0, inside / np.where(lengths > 0, lengths, 1.0), 0.0)
        return cover, np.stack([s, e], axis=1) - start

    if len(segments) == 0:
        start = int(rng.integers(0, length - crop + 1))
        return start, crop, np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.float32)
    for _ in range(CROP_TRIALS):
        start = int(rng.integers(0, length - crop + 1))
        cover, rel = cut(start)
        keep = np.flatnonzero((cover >= trunc_thresh) & (cover > 0))
        if len(keep):
            return start, crop, keep, rel[keep]
    k = int(rng.integers(len(segments)))
    centre = 0.5 * (segments[k, 0] + segments[k, 1])
    start = int(np.clip(round(centre - crop / 2), 0, length - crop))
    cover, rel = cut(start)
    keep = np.flatnonzero((cover >= trunc_thresh) & (cover > 0))
    if not len(keep):
        keep = np.array([int(np.argmax(cover))])
    return start, crop, keep, rel[keep]


def collate(batch: list[dict[str, Any]], pad_multiple: int = 1,
            max_len: int | None = None) -> dict[str, Any]:
    """Stack items into a zero-padded batch.

    ``feats`` (B, C, Tpad) float32, ``mask`` (B, Tpad) bool (True = real snippet), ``segments``
    / ``labels`` as per-item lists, ``meta`` the scalar fields + ``video_id`` of each item.
    ``Tpad`` = ``max_len`` if given (else the longest item), rounded up to ``pad_multiple``.
    """
    if not batch:
        raise ValueError("collate: empty batch")
    lengths = [int(b["feats"].shape[1]) for b in batch]
    t = max(lengths)
    if max_len is not None:
        if t > max_len:
            raise ValueError(f"collate: an item has {t} snippets, more than max_len={max_len}")
        t = max_len
    t = -(-t // pad_multiple) * pad_multiple
    c = int(batch[0]["feats"].shape[0])
    feats = torch.zeros(len(batch), c, t, dtype=torch.float32)
    mask = torch.zeros(len(batch), t, dtype=torch.bool)
    for i, (b, n) in enumerate(zip(batch, lengths, strict=True)):
        if b["feats"].shape[0] != c:
            raise ValueError(f"collate: item {b['video_id']!r} has {b['feats'].shape[0]} "
                             f"channels, expected {c}")
        feats[i, :, :n] = b["feats"]
        mask[i, :n] = True
    meta = [{k: v for k, v in b.items() if k not in ("feats", "segments", "labels")}
            for b in batch]
    return {"feats": feats, "mask": mask, "segments": [b["segments"] for b in batch],
            "labels": [b["labels"] for b in batch], "meta": meta}
