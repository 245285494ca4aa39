"""A full-scale synthetic I3D feature set on the real THUMOS14 annotations.

Unlike :mod:`amnet.data.synthetic` (a small smoke-test set with invented layouts), this lays
synthetic features under a *real* annotation file: every video of it (THUMOS14: 200
Validation videos to train, 212 Test) at its full duration and own fps, every annotated
instance where the file puts it. The annotation file is copied into the set byte for byte, so
training and scoring read exactly the public ground truth. Features are laid out like the public
two-stream I3D releases (``<video>.npy``, T × C float32, an RGB-like first half and a flow-like
second half) and their statistics are fitted to real I3D features (``docs/synthetic_features.md``,
``bench/feature_realism.py``).

Feature model (per stream; ``f`` is one snippet's C/2 channels)::

    y(t) = context_v + Σ_k √λ_k (shot_k(t) + slow_k(t) + fast_k(t)) d_k + white(t)
           + Σ_j m_j(t) · a_j · (P_kj + inst_j + phase_kj(u_j(t)))          annotated actions
           + Σ_n m_n(t) · a_n · (P_kn + inst_n + phase_kn(u_n(t)))          unannotated near-actions
    f(t) = g ⊙ max(softplus(b + y(t)) − δ, 0)

* ``context_v``: a per-video vector present in every snippet, action and background alike:
  part the video's own scene, part its class's venue (shared by a confusable pair), part its
  class prototype (``background_similarity``): the scene tells the class, not where actions are.
* ``d_k``: a fixed dictionary of directions with a power-law spectrum ``λ_k ∝ k^-α``
  (permuted per video, so different videos vary along different directions): real I3D
  features vary over time in a few dominant directions (top-10 principal components hold
  60-75 % of a clip's variance). Three processes drive them: ``shot`` (piecewise constant,
  camera cuts), ``slow`` (gaussian-smoothed, seconds) and ``fast`` (a box filter of width
  ``window`` over white noise on a 4-frame grid: the overlap of neighbouring 16-frame I3D
  windows, which makes lag-1/2 snippets alike). ``white``: per-snippet full-rank noise.
* Actions: trapezoid envelopes ``m`` around the annotated extent, 0.5 at the annotated
  boundaries and ramping in and out over a quarter of the action (0.3-2 s), the true extent
  jittered against the annotation (soft, slightly wrong boundaries); class prototype ``P_k``
  plus an instance appearance and a start / middle / end phase progression along the action
  (``u`` = relative position). Confusable classes (paired by how often they share a video in
  the annotation file: CricketBowling/CricketShot, CliffDiving/Diving, ...) share a component
  of their prototypes (``confusion``) and of their venues.
* Near-actions: ``near_actions`` per annotated instance, unannotated, in the background gaps:
  weak (``near_strength``) and often incomplete (the phase stops part way), of the video's
  classes or their partners: false positives a detector must learn to reject.
* ``b``, ``g``, ``δ``: per-channel bias, output scale and cut-off giving I3D's non-negative,
  right-skewed values with a few per cent exact zeros (more in the flow stream).

The flow-like stream has a stronger action signal and a weak context over a global channel
profile; the RGB-like one a strong per-video context (real flow features of different videos
share their channel means far more than RGB ones: ``xvideo_corr`` in the docs' table).
Seeded by ``seed``, one generator per video, so the set is byte-identical for a config; time
constants are in seconds and all temporal processes live on a 4-frame grid, so ``stride`` 4 and 8
describe the same video.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amnet.config import SyntheticI3DConfig
from amnet.data.annotations import AnnotationSet, VideoAnnotation, load_annotations
from amnet.data.feature_set import ANNOTATIONS_FILE
from amnet.data.features import feature_path
from amnet.data.manifest import write_manifest
from amnet.data.timing import expected_num_snippets, snippet_to_seconds
from amnet.errors import ConfigError, DataError

__all__ = [
    "FLOW",
    "RGB",
    "StreamModel",
    "confusable_pairs",
    "generate_synthetic_i3d",
    "video_features",
]

log = logging.getLogger(__name__)

GRID_FRAMES = 4  # frames per step of the grid the temporal processes live on


@dataclass(frozen=True)
class StreamModel:
    """Fitted constants of one stream (pre-activation units unless stated)."""

    bias_mean: float  # channel bias b ~ N(bias_mean, bias_std)
    bias_std: float
    gain_log_std: float  # output scale g = gain · exp(N(0, gain_log_std))
    gain: float
    cutoff: float  # δ: softplus values below it become exact zeros
    context: float  # std of the per-video context vector
    context_class: float  # share of the context's variance from the class venue
    shot: float  # std of each driving process (spread over the dictionary)
    slow: float
    slow_s: float  # gaussian time constant of the slow process, seconds
    fast: float
    white: float
    action: float  # scale of the action signal (prototype + instance + phase)
    spectrum: float  # α of λ_k ∝ k^-α
    shot_s: float  # mean shot length, seconds
    views: int  # distinct camera views per video (shots cycle among them)


# fitted with bench/feature_realism.py against ../shared/data/real_i3d (see the docs page)
RGB = StreamModel(bias_mean=-0.71, bias_std=0.089, gain_log_std=0.31, gain=0.41, cutoff=0.035,
                  context=0.8, context_class=0.5, shot=0.68, slow=0.56, slow_s=0.58,
                  fast=0.69, white=0.45, action=0.064, spectrum=1.4, shot_s=8.0, views=3)
FLOW = StreamModel(bias_mean=-1.6, bias_std=0.5, gain_log_std=0.24, gain=0.69, cutoff=0.048,
                   context=0.21, context_class=0.34, shot=0.44, slow=0.43, slow_s=1.2,
                   fast=0.6, white=0.47, action=0.073, spectrum=1.1, shot_s=8.0, views=3)
ATOMS = 96  # dictionary size per stream
PHASES = 3  # start / middle / end
COMMON = 0.3  # share of every class prototype common to all classes (generic motion)
INSTANCE = 0.5  # instance appearance relative to the class prototype
RAMP_SHARE, RAMP_MIN_S, RAMP_MAX_S = 0.25, 0.3, 2.0
JITTER_SHARE, JITTER_MAX_S = 0.05, 0.5  # true extent vs annotation
AMP_RANGE = (0.7, 1.3)
PARTNER_NEAR_SHARE = 0.3  # near-actions of the partner class


# --------------------------------------------------------------------------- the world

def confusable_pairs(ann: AnnotationSet) -> np.ndarray:
    """``partner[k]``: the class paired with ``k`` (itself when unpaired).

    Greedy matching on how many videos two classes share, most first (ties: lower indices);
    classes that share no video are paired in index order. For THUMOS14 this gives
    CricketBowling/CricketShot, CliffDiving/Diving and the like: what a detector confuses.
    """
    k = len(ann.classes)
    co = np.zeros((k, k), dtype=np.int64)
    for v in ann.videos.values():
        idx = sorted({ann.class_index[lab] for lab in v.labels})
        for a in idx:
            for b in idx:
                if a != b:
                    co[a, b] += 1
    partner = np.arange(k)
    free = np.ones(k, dtype=bool)
    cand = sorted((-int(co[a, b]), a, b) for a in range(k) for b in range(a + 1, k)
                   if co[a, b] > 0)
    for _, a, b in cand:
        if free[a] and free[b]:
            partner[a], partner[b], free[a], free[b] = b, a, False, False
    rest = np.flatnonzero(free)
    for a, b in zip(rest[0::2], rest[1::2], strict=False):
        partner[a], partner[b] = b, a
    return partner


@dataclass
class _StreamWorld:
    model: StreamModel
    bias: np.ndarray  # (C,)
    gain: np.ndarray  # (C,)
    atoms: np.ndarray  # (ATOMS, C), unit per-channel variance
    spectrum: np.ndarray  # (ATOMS,), sums to 1
    proto: np.ndarray  # (K, C)
    venue: np.ndarray  # (K, C)
    phase: np.ndarray  # (K, PHASES, C)


def _paired(rng: np.random.Generator, partner: np.ndarray, c: int, share: float,
            common: float = 0.0) -> np.ndarray:
    """(K, C) unit-variance vectors; a class and its partner share ``share`` of the variance
    and all classes ``common`` of it (what is left, ``1 - share - common``, is the class's
    own; ``share`` is cut to fit)."""
    share = min(share, 1.0 - common)
    own = rng.standard_normal((len(partner), c))
    shared = rng.standard_normal((len(partner), c))
    pair = shared[np.minimum(np.arange(len(partner)), partner)]  # one vector per pair
    every = rng.standard_normal(c)
    return (math.sqrt(1 - share - common) * own + math.sqrt(share) * pair
            + math.sqrt(common) * every)


def _world(cfg: SyntheticI3DConfig, partner: np.ndarray, dim: int) -> list[_StreamWorld]:
    worlds = []
    for s, m in enumerate((RGB, FLOW)):
        rng = np.random.default_rng([cfg.seed, 0, s])
        lam = np.arange(1, ATOMS + 1, dtype=np.float64) ** -m.spectrum
        worlds.append(_StreamWorld(
            model=m, bias=rng.normal(m.bias_mean, m.bias_std, dim),
            gain=m.gain * np.exp(rng.normal(0.0, m.gain_log_std, dim)),
            atoms=rng.standard_normal((ATOMS, dim)), spectrum=lam / lam.sum(),
            proto=_paired(rng, partner, dim, cfg.confusion, COMMON),
            venue=_paired(rng, partner, dim, cfg.confusion),
            phase=rng.standard_normal((len(partner), PHASES, dim))))
    return worlds


# --------------------------------------------------------------------------- one video

def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along axis 0 (FFT, zero-padded), scaled back to unit variance."""
    if sigma <= 0.5:
        return x
    n = len(x)
    pad = int(4 * sigma) + 1
    size = 1 << (n + 2 * pad - 1).bit_length()
    freq = np.fft.rfftfreq(size)
    h = np.exp(-0.5 * (2 * np.pi * freq * sigma) ** 2)
    y = np.fft.irfft(np.fft.rfft(x, n=size, axis=0) * h[:, None], n=size, axis=0)[:n]
    return y * math.sqrt(2 * sigma * math.sqrt(math.pi))  # white → unit variance


def _box(x: np.ndarray, width: int) -> np.ndarray:
    """Mean of ``width`` consecutive rows (output has len(x) - width + 1 rows), × √width."""
    c = np.cumsum(np.concatenate([np.zeros((1, x.shape[1])), x]), axis=0)
    return (c[width:] - c[:-width]) / math.sqrt(width)


def _events(video: VideoAnnotation, labels: np.ndarray, partner: np.ndarray,
            cfg: SyntheticI3DConfig, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Annotated actions (jittered) and near-actions: (true extents (N, 2) s, class (N,),
    amplitude (N,), phase reach (N,) — 1 for a complete action)."""
    seg = video.segments
    n = len(seg)
    length = seg[:, 1] - seg[:, 0]
    jit = np.minimum(JITTER_SHARE * length, JITTER_MAX_S)[:, None] * rng.standard_normal((n, 2))
    true = seg + jit
    true[:, 1] = np.maximum(true[:, 1], true[:, 0] + 0.5 * length)
    amp = rng.uniform(*AMP_RANGE, n)
    reach = np.ones(n)
    n_near = int(rng.poisson(cfg.near_actions * n)) if n else 0
    if n_near == 0:
        return true, labels, amp, reach
    # near-actions: lengths like this video's actions, in the gaps (1 s from any annotation)
    src = rng.integers(0, n, n_near)
    nlen = np.minimum(length[src] * np.exp(rng.normal(0, 0.3, n_near)), 0.5 * video.duration)
    tries = 8
    start = rng.uniform(0, 1, (n_near, tries)) * np.maximum(video.duration - nlen, 0)[:, None]
    end = start + nlen[:, None]
    clash = ((start[..., None] < seg[:, 1] + 1.0) & (end[..., None] > seg[:, 0] - 1.0)).any(-1)
    ok = ~clash
    first = ok.argmax(1)
    keep = ok.any(1)
    ns, ne = start[np.arange(n_near), first][keep], end[np.arange(n_near), first][keep]
    nl = labels[src][keep]
    nl = np.where(rng.random(len(nl)) < PARTNER_NEAR_SHARE, partner[nl], nl)
    namp = rng.uniform(0.5, 1.0, len(nl)) * cfg.near_strength
    nreach = np.where(rng.random(len(nl)) < 0.5, rng.uniform(0.3, 0.8, len(nl)), 1.0)
    return (np.concatenate([true, np.stack([ns, ne], 1)]), np.concatenate([labels, nl]),
            np.concatenate([amp, namp]), np.concatenate([reach, nreach]))


def _envelopes(t: np.ndarray, ext: np.ndarray, reach: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) presence (trapezoid, 0.5 at the true boundaries) and (T, N, PHASES) phase
    weights (piecewise linear in the relative position, stopped at ``reach``)."""
    s, e = ext[:, 0], ext[:, 1]
    ramp = np.clip(RAMP_SHARE * (e - s), RAMP_MIN_S, RAMP_MAX_S)
    tt = t[:, None]
    m = np.clip((tt - s + ramp / 2) / ramp, 0, 1) * np.clip((e + ramp / 2 - tt) / ramp, 0, 1)
    u = np.clip((tt - s) / (e - s), 0, 1) * reach  # an incomplete action stops part way
    centres = np.linspace(0, 1, PHASES)
    w = np.clip(1 - np.abs(u[..., None] - centres) * (PHASES - 1), 0, 1)
    return m, w


def video_features(worlds: list[_StreamWorld], video: VideoAnnotation, labels: np.ndarray,
                   dominant: int, partner: np.ndarray, cfg: SyntheticI3DConfig,
                   rng: np.random.Generator, *, stride: int, window: int) -> np.ndarray:
    """The (T, C) float32 features of one video (T from its duration and fps)."""
    t_out = expected_num_snippets(video.duration, video.fps, stride, window)
    grid = math.gcd(GRID_FRAMES, stride, window)
    step, span = stride // grid, max(window // grid, 1)
    t_grid = (t_out - 1) * step + 1  # grid rows whose window starts at a snippet's start
    rows = np.arange(t_out) * step
    grid_s = grid / video.fps
    t = snippet_to_seconds(np.arange(t_out, dtype=np.float64), video.fps, stride, window)
    ext, lab, amp, reach = _events(video, labels, partner, cfg, rng)
    m, w = _envelopes(t, ext, reach)
    weights = np.concatenate([m * amp, ((m * amp)[..., None] * w).reshape(t_out, -1)], 1)
    inst = rng.standard_normal((len(lab), worlds[0].proto.shape[1] * len(worlds)))
    out = []
    for s, wd in enumerate(worlds):
        md, c = wd.model, wd.bias.shape[0]
        lam = np.sqrt(wd.spectrum[rng.permutation(ATOMS)])
        # shots: cut times ~ exponential, each shot one of a few camera views
        n_cuts = int(video.duration / md.shot_s * 3) + 2
        cuts = np.cumsum(rng.exponential(md.shot_s, n_cuts)) - rng.uniform(0, md.shot_s)
        views = rng.standard_normal((md.views, ATOMS))
        view_of = rng.integers(0, md.views, n_cuts + 1)
        shot = views[view_of[np.searchsorted(cuts, rows * grid_s)]]
        slow = _gaussian_smooth(rng.standard_normal((t_grid, ATOMS)),
                                md.slow_s / grid_s)[rows]
        fast = _box(rng.standard_normal((t_grid + span - 1, ATOMS)), span)[rows]
        coef = (md.shot * shot + md.slow * slow + md.fast * fast) * lam
        y = (coef.astype(np.float32) @ wd.atoms.astype(np.float32)).astype(np.float64)
        y += md.white * rng.standard_normal((t_out, c))
        k = dominant
        venue = (math.sqrt(md.context_class) * wd.venue[k]
                 + math.sqrt(1 - md.context_class) * rng.standard_normal(c))
        ctx = md.context * venue + cfg.background_similarity * md.action * cfg.signal * wd.proto[k]
        if len(lab):
            vec = np.concatenate([wd.proto[lab] + INSTANCE * inst[:, s * c:(s + 1) * c],
                                  wd.phase[lab].reshape(-1, c)], 0)
            y += (md.action * cfg.signal) * (weights @ vec)
        z = wd.bias + ctx + y
        f = wd.gain * np.maximum(np.logaddexp(0.0, z) - md.cutoff, 0.0)
        out.append(f.astype(np.float32))
    return np.concatenate(out, 1)


# --------------------------------------------------------------------------- the set

def generate_synthetic_i3d(cfg: SyntheticI3DConfig, out_dir: str | Path, *, feature_dim: int,
                           num_classes: int, stride: int, window: int,
                           default_fps: float | None = None,
                           segment_policy: str = "clip") -> Path:
    """Write ``<video>.npy`` for every video of ``cfg.annotations``, a byte copy of that file
    as ``annotations.json`` and ``manifest.json`` into ``out_dir`` (created)."""
    if feature_dim % 2:
        raise ConfigError(f"'data.feature_dim' ({feature_dim}) must be even for "
                          "data.source=synthetic_i3d (an RGB-like and a flow-like half)")
    src = Path(cfg.annotations)
    if not src.is_file():
        raise DataError(f"data.synthetic_i3d.annotations: annotation file not found: {src}")
    ann = load_annotations(src, default_fps=default_fps, segment_policy=segment_policy)
    if len(ann.classes) > num_classes:
        raise DataError(f"{src}: {len(ann.classes)} classes but data.num_classes={num_classes}")
    partner = confusable_pairs(ann)
    worlds = _world(cfg, partner, feature_dim // 2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for n, (vid, v) in enumerate(sorted(ann.videos.items())):
        labels = np.array([ann.class_index[lab] for lab in v.labels], dtype=np.int64)
        dominant = (int(np.bincount(labels).argmax()) if len(labels)
                    else int(np.random.default_rng([cfg.seed, 1, n]).integers(len(ann.classes))))
        rng = np.random.default_rng([cfg.seed, 2, n])
        feats = video_features(worlds, v, labels, dominant, partner, cfg, rng,
                               stride=stride, window=window)
        np.save(feature_path(out, vid, source=ann.source), feats, allow_pickle=False)
        entries[vid] = feats.shape
    shutil.copyfile(src, out / ANNOTATIONS_FILE)  # the real file, unmodified
    write_manifest(out, stride=stride, window=window, classes=ann.classes,
                   default_fps=default_fps, segment_policy=segment_policy, annotations=ann,
                   source={"kind": "synthetic_i3d", "generator": "amnet.data.synthetic_i3d",
                           "annotations": str(src),
                           "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}})
    log.info("synthetic I3D feature set: %d videos in %s", len(entries), out)
    return out
