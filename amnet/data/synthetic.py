"""The embedded default data: a THUMOS14-shaped synthetic I3D feature set.

Written in the public release layout (``<video>.npy`` (T, C) float32, ActivityNet-style
``annotations.json``, ``manifest.json``), byte-identical for the same config and seed, with no
runtime dependency on any real data: THUMOS14's statistics are embedded below as fitted
parameters (``tests/data/test_synthetic.py`` checks them against the real annotation file).

Generative model
----------------
*Layout* (seconds). Video duration ``D ~ LogNormal(log 154.5 s, 0.88)`` truncated to
[20, 1000] s, times ``duration_scale``. Each video has one dominant class ``c`` (classes spread
evenly over the videos of a split); 15 % of videos also contain actions of ``c``'s confusable
partner (as THUMOS14's CricketBowling/CricketShot and CliffDiving/Diving videos do), always
fewer than half. Number of actions ``n = 1 + Poisson(r · D)`` with a per-video rate
``r ~ LogNormal(-2.88, 0.89)`` /s, so actions per second — not per video — are kept when
``duration_scale`` shortens videos (≈15 actions per video at scale 1). Action length of class
``k``: ``LogNormal(log m_k, 0.62)`` truncated to [0.2, 118] s, with ``m_k`` THUMOS14's
per-class medians (1.1 s … 8.75 s; overall median ≈ 3 s). Actions do not overlap, cover at
most 85 % of the video and are placed uniformly at random (Dirichlet gaps).

*Features*. Every snippet ``i`` (centre ``t_i = (i·stride + window/2)/fps``) gets a
pre-activation ``x_i`` in R^C::

    s_i = 0.6 · G_shot(i)                                        scene (venue + shot)
        + signal · [ β·(1 − M_i) · P_c                           background like the class
                     + Σ_j m_j(t_i) · a_j · (P_kj + ε_j)         action j of class k_j
                     + 0.5 · Σ_j (on_j(t_i)·O_kj + off_j(t_i)·E_kj) ]   start / end phases
    x_i = bias + gain ⊙ ( blur_σ(s)_i + noise · ν_i )
    f_i = max(softplus(x_i) − 0.02, 0)                           non-negative, I3D-like

(``signal``, ``noise``, ``β = background_similarity``, ``γ = confusion`` and ``σ = blur``
are keys of ``data.synthetic``; the rest are fixed below.)

* ``P_k = √(1−γ)·U_k + √γ·S_pair(k)``: class prototypes; classes 2p and 2p+1 share the
  component ``S_p``, so a confusable pair has prototype correlation ``γ = confusion``.
* ``m_j`` is a trapezoid that ramps in and out over 25 % of the action (at least one snippet,
  at most 2 s) and is 0.5 exactly at the annotated boundaries; ``M = min(Σ m_j, 1)``.
  ``a_j ~ U(0.7, 1.3)`` and ``ε_j`` (instance appearance) vary per action.
* ``β = background_similarity``: background snippets carry that share of the dominant class's
  prototype, so "action vs background" is a matter of degree, not presence.
* ``G``: per-video shots (cuts about every 12 s) mixing the class's venue vector (shared by a
  confusable pair to degree ``γ``) with a shot-specific random vector: context that tells the
  class but not where the actions are, and cuts that look like boundaries.
* ``blur_σ``: gaussian blur over snippets (``blur``) of the whole signal: the temporal
  smearing between neighbouring snippets that AMNet targets. ``ν``: half white, half blurred
  noise (real I3D lag-1 autocorrelation is ≈ 0.5).

So single snippets are ambiguous (blur, ramps, class-like background, confusable pairs) while
sequence context (a whole action, the video's venue, start/end phases) makes it learnable.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amnet.config import SyntheticConfig
from amnet.data.features import feature_path
from amnet.data.manifest import ANNOTATIONS_FILE, write_manifest
from amnet.data.timing import snippet_to_seconds
from amnet.io import dump_json

__all__ = ["THUMOS14", "SyntheticVideo", "generate_synthetic", "sample_layout"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Thumos14:
    """Statistics fitted on the 412 videos / 6,365 instances of THUMOS14 (Validation+Test)."""

    duration_log_median: float = math.log(154.5)  # s
    duration_log_std: float = 0.88
    duration_range: tuple[float, float] = (20.0, 1000.0)  # truncation (s), ~2.3 sigma
    rate_log_mean: float = -2.88  # log(actions per second of video)
    rate_log_std: float = 0.89
    # per-class median action length (s), THUMOS14 classes in sorted order
    class_length_medians: tuple[float, ...] = (
        3.0, 1.5, 2.2, 8.75, 2.7, 1.2, 1.1, 2.5, 2.3, 4.2,
        7.1, 4.5, 6.3, 7.1, 6.4, 4.65, 2.9, 1.5, 4.25, 1.7)
    length_log_std: float = 0.62  # within-class spread of log length
    length_range: tuple[float, float] = (0.2, 118.0)
    mixed_video_share: float = 0.15  # videos with a second (confusable) class
    max_coverage: float = 0.85


THUMOS14 = _Thumos14()

TRAIN_SUBSET, TEST_SUBSET = "Validation", "Test"
W_SCENE = 0.6  # pre-activation scales; per-channel noise is cfg.noise
W_PHASE_SHARE = 0.5  # phase vectors relative to the action signal
RAMP_SHARE, RAMP_MIN_SNIPPETS, RAMP_MAX_S = 0.25, 1.0, 2.0
SHOT_MEAN_S = 12.0


def class_names(k: int) -> list[str]:
    return [f"action_{i:02d}" for i in range(k)]


@dataclass
class SyntheticVideo:
    video_id: str
    subset: str
    duration: float  # seconds (= frames / fps)
    num_snippets: int
    dominant: int
    segments: np.ndarray  # (N, 2) seconds
    labels: np.ndarray  # (N,) class index


def _lognormal_truncated(rng: np.random.Generator, log_median: float, log_std: float,
                         low: float, high: float) -> float:
    """One draw by rejection (keeps the median of a range symmetric around it)."""
    while True:
        x = math.exp(rng.normal(log_median, log_std))
        if low <= x <= high:
            return x


def _video_layout(cfg: SyntheticConfig, rng: np.random.Generator, video_id: str, subset: str,
                  dominant: int, stride: int, window: int) -> SyntheticVideo:
    st = THUMOS14
    dur = _lognormal_truncated(rng, st.duration_log_median, st.duration_log_std,
                               *st.duration_range) * cfg.duration_scale
    frames = max(round(dur * cfg.fps), window)
    duration = frames / cfg.fps
    num_snippets = (frames - window) // stride + 1
    rate = math.exp(rng.normal(st.rate_log_mean, st.rate_log_std))
    n = 1 + int(rng.poisson(rate * duration))
    partner = dominant ^ 1 if (dominant ^ 1) < cfg.num_classes else dominant
    labels = np.full(n, dominant, dtype=np.int64)
    if n > 1 and partner != dominant and rng.random() < st.mixed_video_share:
        n_other = int(rng.integers(1, (n - 1) // 2 + 1)) if n >= 3 else 0
        labels[rng.choice(n, size=n_other, replace=False)] = partner
    lengths = np.array([
        _lognormal_truncated(rng, math.log(st.class_length_medians[k % len(
            st.class_length_medians)]), st.length_log_std, *st.length_range) for k in labels])
    lengths = np.minimum(lengths, 0.5 * duration)
    while lengths.sum() > st.max_coverage * duration and len(lengths) > 1:
        lengths, labels = lengths[:-1], labels[:-1]
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (duration - lengths.sum())
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    segments = np.stack([starts, starts + lengths], axis=1)
    return SyntheticVideo(video_id, subset, duration, num_snippets, dominant,
                          np.round(segments, 4), labels)


def sample_layout(cfg: SyntheticConfig, *, stride: int, window: int
                  ) -> list[SyntheticVideo]:
    """Durations, classes and segments of every video (no features): cheap, for statistics."""
    videos = []
    for split_id, (subset, count) in enumerate(((TRAIN_SUBSET, cfg.n_train),
                                                (TEST_SUBSET, cfg.n_test))):
        order = np.random.default_rng([cfg.seed, 1, split_id]).permutation(count)
        for i in range(count):
            dominant = int(order[i] % cfg.num_classes)  # every class about equally often
            rng = np.random.default_rng([cfg.seed, 2, split_id, i])
            vid = f"synth_{subset.lower()}_{i:04d}"
            videos.append(_video_layout(cfg, rng, vid, subset, dominant, stride, window))
    return videos


@dataclass
class _World:
    """Vectors shared by all videos: prototypes, venues, phases, channel bias and gain."""

    proto: np.ndarray  # (K, C)
    venue: np.ndarray  # (K, C)
    onset: np.ndarray  # (K, C)
    offset: np.ndarray  # (K, C)
    bias: np.ndarray  # (C,)
    gain: np.ndarray  # (C,)


def _paired(rng: np.random.Generator, k: int, c: int, share: float) -> np.ndarray:
    own = rng.standard_normal((k, c))
    pair = rng.standard_normal(((k + 1) // 2, c))
    return math.sqrt(1 - share) * own + math.sqrt(share) * pair[np.arange(k) // 2]


def _world(cfg: SyntheticConfig) -> _World:
    rng = np.random.default_rng([cfg.seed, 0])
    k, c = cfg.num_classes, cfg.feature_dim
    return _World(proto=_paired(rng, k, c, cfg.confusion),
                  venue=_paired(rng, k, c, cfg.confusion),
                  onset=rng.standard_normal((k, c)), offset=rng.standard_normal((k, c)),
                  bias=rng.normal(-1.7, 0.5, c), gain=np.exp(rng.normal(0.0, 0.25, c)))


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along axis 0 with reflected edges (numpy only: amnet has no scipy)."""
    if sigma <= 0 or len(x) == 1:
        return x
    r = max(math.ceil(3 * sigma), 1)
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()
    pad = np.pad(x, ((r, r), (0, 0)), mode="reflect" if len(x) > r else "edge")
    out = np.zeros_like(x)
    for i, wi in enumerate(w):
        out += wi * pad[i:i + len(x)]
    return out


def _envelopes(t: np.ndarray, seg: np.ndarray, snippet_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, N) trapezoid presence (0.5 at the boundaries), onset and offset phase weights."""
    s, e = seg[:, 0], seg[:, 1]
    ramp = np.clip(RAMP_SHARE * (e - s), RAMP_MIN_SNIPPETS * snippet_s, RAMP_MAX_S)
    tt = t[:, None]
    m = (np.clip((tt - (s - ramp / 2)) / ramp, 0, 1) * np.clip(((e + ramp / 2) - tt) / ramp, 0, 1))
    u = np.clip((tt - s) / (e - s), 0, 1)  # relative position inside the action
    on = m * np.clip(1 - u / 0.3, 0, 1)
    off = m * np.clip(1 - (1 - u) / 0.3, 0, 1)
    return m, on, off


def _features(cfg: SyntheticConfig, world: _World, video: SyntheticVideo,
              rng: np.random.Generator, stride: int, window: int) -> np.ndarray:
    c, n_t = cfg.feature_dim, video.num_snippets
    t = snippet_to_seconds(np.arange(n_t, dtype=np.float64), cfg.fps, stride, window)
    # scene: shots cut about every SHOT_MEAN_S seconds, two or three shot types per video
    n_types = int(rng.integers(2, 4))
    shot_vec = (math.sqrt(0.5) * world.venue[video.dominant]
                + math.sqrt(0.5) * rng.standard_normal((n_types, c)))
    cuts = np.cumsum(rng.exponential(SHOT_MEAN_S, size=int(video.duration / SHOT_MEAN_S * 3) + 2))
    shot_of_cut = rng.integers(0, n_types, size=len(cuts) + 1)
    scene = shot_vec[shot_of_cut[np.searchsorted(cuts, t)]]
    # actions
    m, on, off = _envelopes(t, video.segments, stride / cfg.fps)
    amp = rng.uniform(0.7, 1.3, size=len(video.labels))
    inst = world.proto[video.labels] + 0.5 * rng.standard_normal((len(video.labels), c))
    presence = np.minimum(m.sum(1), 1.0)
    act = (cfg.background_similarity * (1 - presence))[:, None] * world.proto[video.dominant]
    act = act + (m * amp) @ inst
    phase = on @ world.onset[video.labels] + off @ world.offset[video.labels]
    s = W_SCENE * scene + cfg.signal * (act + W_PHASE_SHARE * phase)
    white = rng.standard_normal((n_t, c))
    smooth = _blur(rng.standard_normal((n_t, c)), 1.0)
    smooth /= smooth.std() + 1e-12
    noise = cfg.noise * (math.sqrt(0.5) * white + math.sqrt(0.5) * smooth)
    x = world.bias + world.gain * (_blur(s, cfg.blur) + noise)
    f = np.maximum(np.logaddexp(0.0, x) - 0.02, 0.0)  # softplus, small values cut to 0
    return f.astype(np.float32)


def generate_synthetic(cfg: SyntheticConfig, out_dir: str | Path, *, stride: int,
                       window: int) -> Path:
    """Write the synthetic set into ``out_dir`` (created); return ``out_dir``.

    Files: ``<video>.npy`` (T, C) float32 per video, ``annotations.json`` (ActivityNet
    layout, subsets ``Validation`` = train and ``Test``) and ``manifest.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = _world(cfg)
    names = class_names(cfg.num_classes)
    db = {}
    for n, v in enumerate(sample_layout(cfg, stride=stride, window=window)):
        rng = np.random.default_rng([cfg.seed, 3, n])
        feats = _features(cfg, world, v, rng, stride, window)
        np.save(feature_path(out, v.video_id), feats, allow_pickle=False)
        db[v.video_id] = {
            "subset": v.subset, "duration": round(v.duration, 4), "fps": cfg.fps,
            "annotations": [{"label": names[k], "segment": [float(s), float(e)],
                             "label_id": int(k)}
                            for (s, e), k in zip(v.segments, v.labels, strict=True)]}
    dump_json({"version": "amnet-synthetic-1", "database": db}, out / ANNOTATIONS_FILE)
    write_manifest(out, stride=stride, window=window, classes=names,
                   source={"kind": "synthetic", "generator": "amnet.data.synthetic",
                           "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}})
    log.info("synthetic feature set: %d videos in %s", len(db), out)
    return out
