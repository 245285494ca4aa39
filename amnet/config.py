"""One typed configuration for every entry point.

Loaded from ``params/<file>.yaml`` (optionally chaining ``base: other.yaml``) plus dotted
``key=value`` overrides, validated on load: an unknown key, a wrong type or an out-of-range
value raises :class:`ConfigError` naming the key and the file it came from.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from amnet.errors import ConfigError

__all__ = ["Config", "ConfigError", "from_dict", "load_config"]


def _f(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
       le: float | None = None, lt: float | None = None, factory: Any = None,
       help: str = "") -> Any:
    """A dataclass field carrying its valid range (checked by :func:`validate`)."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SyntheticConfig:
    """The embedded synthetic feature set (THUMOS14-shaped, see ``amnet.data.synthetic``)."""

    n_train: int = _f(60, ge=1, help="videos in the training subset")
    n_test: int = _f(40, ge=1, help="videos in the test subset")
    num_classes: int = _f(20, ge=2)
    feature_dim: int = _f(256, ge=4)
    fps: float = _f(30.0, gt=0)
    duration_scale: float = _f(0.25, gt=0, le=1.0,
                               help="scale on THUMOS14 video durations to keep CPU runs short")
    blur: float = _f(1.5, ge=0, help="temporal blur (snippets, gaussian sigma) between neighbours")
    background_similarity: float = _f(0.35, ge=0, le=1,
                                      help="how much background resembles the video's class")
    confusion: float = _f(0.45, ge=0, le=1, help="weight shared between confusable class pairs")
    noise: float = _f(0.6, ge=0, help="per-channel noise (pre-activation units)")
    signal: float = _f(0.4, gt=0, help="strength of the action-class signal against the noise")
    seed: int = _f(0)


@dataclass
class SyntheticI3DConfig:
    """Synthetic I3D features under a real annotation file (``amnet.data.synthetic_i3d``)."""

    annotations: str = _f("../shared/data/thumos14.json",
                          help="ActivityNet-style JSON whose videos and instances are used as is")
    signal: float = _f(1.0, gt=0, help="scale on the action-class signal")
    confusion: float = _f(0.65, ge=0, le=1,
                          help="prototype share common to a confusable class pair")
    background_similarity: float = _f(0.3, ge=0, le=1,
                                      help="share of the class prototype in every snippet")
    near_actions: float = _f(0.5, ge=0, help="unannotated near-actions per annotated action")
    near_strength: float = _f(0.45, ge=0, le=1, help="their largest amplitude (actions ~1)")
    seed: int = _f(0)


@dataclass
class DataConfig:
    """Where the features live and how snippets map to seconds."""

    name: str = "synthetic"
    source: Literal["synthetic", "release", "synthetic_i3d"] = "synthetic"
    release_dir: str = _f("", help="folder of <video_id>.npy when source=release")
    release_annotations: str = _f("", help="ActivityNet-style JSON when source=release")
    root: str = _f("data/features",
                   help="prepared feature set: <video>.npy + annotations.json + manifest.json")
    feature_dim: int = _f(256, ge=1)
    num_classes: int = _f(20, ge=1)
    stride: int = _f(4, ge=1, help="frames between consecutive snippets")
    window: int = _f(16, ge=1, help="frames per snippet")
    default_fps: float = _f(30.0, gt=0, help="used when a video has no fps field")
    train_subset: str = "Validation"
    test_subset: str = "Test"
    val_fraction: float = _f(0.2, ge=0, lt=1,
                             help="share of train_subset's videos held out, class-stratified, "
                                  "as the validation split every choice is made on (sweeps, "
                                  "ASHA, eval_every, champion); never trained on. 0 = none")
    val_seed: int = _f(0, ge=0, help="seed of the validation split (which videos are held out)")
    max_seq_len: int = _f(768, ge=8, help="training crop length in snippets")
    trunc_thresh: float = _f(0.5, ge=0, le=1,
                             help="keep a cropped action if this share of it survives")
    crop_ratio_min: float = _f(0.9, gt=0, le=1)
    segment_policy: Literal["clip", "reject"] = _f("clip", help="segments outside [0, duration]")
    synthetic: SyntheticConfig = _f(factory=SyntheticConfig)
    synthetic_i3d: SyntheticI3DConfig = _f(factory=SyntheticI3DConfig)


@dataclass
class ModelConfig:
    """AMNet architecture and the ablation switches of Tables 2-3."""

    ame: bool = True
    ame_layers: int = _f(2, ge=1, help="K in Eq. 1")
    gam: bool = _f(True, help="False: per-level self-attention only, no groups")
    self_attention: bool = _f(True, help="False: no attention at all (Table 2 baseline)")
    gam_depth: int = _f(2, ge=1, help="attention layers per level / cross-attention blocks")
    fpn_levels: int = _f(6, ge=2, help="K pyramid levels, each half as long")
    short_levels: int = _f(0, ge=0, help="levels in the long-T group; 0 = K//2 (Eq. 7)")
    embed_dim: int = _f(256, ge=8)
    n_heads: int = _f(4, ge=1)
    mlp_ratio: float = _f(4.0, gt=0)
    head_layers: int = _f(2, ge=1, help="K in Eq. 9")
    head_kernel: int = _f(3, ge=1)
    matching_head: bool = True
    dropout: float = _f(0.0, ge=0, lt=1)
    center_radius: float = _f(1.5, ge=0, help="center-sampling radius in level strides")
    regression_ranges: list[list[float]] = _f(factory=lambda: [
        [0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
        help="per level [low, high] of a point's larger distance to the action's ends, in "
             "input snippets (amnet.model.assign)")
    prior_prob: float = _f(0.01, gt=0, lt=1)
    attention_window: int = _f(0, ge=0, help="per-level self-attention and group "
                               "cross-attention over a local window of this many steps (odd, "
                               ">= 3; linear in T; cross-attention: each query sees this window "
                               "of every level of the other group at its aligned position); "
                               "0 = global attention (Eq. 6, 8 as written)")
    position: Literal["none", "sinusoidal"] = _f("none", help="position information added to "
                                                 "every level before attention: sinusoidal "
                                                 "code of each step's snippet index (shared "
                                                 "by all levels); none = no position input")
    drop_path: float = _f(0.0, ge=0, lt=1, help="stochastic depth: probability of dropping "
                          "each residual branch of the GAM blocks per video; 0 = off")
    ame_init_scale: float = _f(1.0, ge=0, help="scale of the AME output layer's initial "
                               "weights and bias (1 = the default init; small values start "
                               "Eq. 4 near the identity F + 0)")


@dataclass
class LossConfig:
    """Eq. 11-12 and the triplet loss of Eq. 2-3."""

    lambda1: float = _f(1.0, ge=0)
    lambda2: float = _f(1.0, ge=0)
    triplet_margin: float = _f(1.0, ge=0, help="alpha in Eq. 3")
    focal_alpha: float = _f(0.25, ge=0, le=1)
    focal_gamma: float = _f(2.0, ge=0)
    label_smoothing: float = _f(0.0, ge=0, lt=1)
    matching: Literal["l2", "l1", "bce"] = "l2"
    norm_momentum: float = _f(0.9, ge=0, lt=1, help="moving average of the positive count")
    triplet_anchors: Literal["action", "both"] = _f("action", help="anchors of Eq. 2-3: "
                                                    "action steps only, or both: background "
                                                    "steps are anchors too with positive and "
                                                    "negative swapped (the two means averaged)")


@dataclass
class TrainConfig:
    """Optimisation (§4.2)."""

    epochs: int = _f(12, ge=1)
    batch_size: int = _f(4, ge=1)
    lr: float = _f(1e-4, gt=0)
    weight_decay: float = _f(5e-2, ge=0)
    warmup_epochs: float = _f(1.0, ge=0)
    eta_min: float = _f(1e-8, ge=0)
    clip_grad: float = _f(1.0, ge=0, help="0 disables clipping")
    ema: bool = False
    ema_decay: float = _f(0.999, gt=0, lt=1)
    seed: int = 0
    loader_workers: int = _f(0, ge=0)
    device: str = _f("auto", help="auto | cpu | cuda | cuda:N")
    amp: Literal["off", "bf16", "fp16"] = "off"
    eval_every: int = _f(1, ge=0, help="epochs between validation mAP; 0 = only at the end")
    checkpoint_dir: str = "outputs/checkpoints"
    ame_optimizer: Literal["shared", "separate"] = _f("shared", help="phase 1 (triplet) steps "
                                                      "the AME with the detector's AdamW "
                                                      "(shared) or with its own AdamW state "
                                                      "(separate: the two objectives' moment "
                                                      "estimates never mix)")


@dataclass
class InferConfig:
    """Decoding (Eq. 13-14) and Soft-NMS."""

    confidence: Literal["sigmoid", "sigmoid*sigmoid", "sigmoid*tanh"] = "sigmoid*tanh"
    pre_nms_thresh: float = _f(1e-3, ge=0, le=1)
    pre_nms_topk: int = _f(2000, ge=1)
    min_duration: float = _f(0.05, ge=0, help="seconds")
    nms_sigma: float = _f(0.5, gt=0)
    nms_iou_thresh: float = _f(0.1, ge=0, le=1, help="overlap below which no decay is applied")
    min_score: float = _f(1e-3, ge=0)
    max_detections: int = _f(200, ge=1)
    class_aware: bool = True
    video_scores: str = _f("", help="external video-level class scores JSON (ActivityNet fusion)")
    video_topk: int = _f(2, ge=1, help="classes taken from external scores per video")
    window: int = _f(0, ge=0, help="snippets per inference window for long videos "
                     "(amnet/inference/windows.py); 0 = the whole video in one pass")
    window_overlap: int = _f(256, ge=0, help="snippets shared by neighbouring windows")
    topk_per_level: int = _f(0, ge=0, help="pre-NMS candidates kept per pyramid level "
                             "(all levels' candidates then go to Soft-NMS together; "
                             "pre_nms_topk is not used); 0 = one global top-k (pre_nms_topk) "
                             "over every level")


@dataclass
class EvalConfig:
    tiou: list[float] = _f(factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    subset: str = "Test"


@dataclass
class RayConfig:
    """Ray Train scaling and fault tolerance."""

    address: str = _f("", help="existing cluster; empty = RAY_ADDRESS or a local cluster")
    num_workers: int = _f(0, ge=0, help="0 = plain in-process engine, no Ray; N >= 1 = Ray "
                                      "Train with N workers (train.batch_size is global)")
    use_gpu: bool = False
    cpus_per_worker: float = _f(1.0, gt=0)
    gpus_per_worker: float = _f(0.0, ge=0)
    local_cpus: int = _f(0, ge=0, help="CPUs for a local cluster; 0 = os.cpu_count()")
    max_failures: int = _f(1, ge=-1)
    storage_path: str = "outputs/ray_results"
    run_name: str = _f("", help="reuse only to resume a crashed run; empty = fresh name")
    startup_timeout_s: float = _f(60.0, gt=0)


@dataclass
class SweepConfig:
    """Ray Tune + Optuna search (Table 5 and GAM depth)."""

    num_samples: int = _f(4, ge=1)
    max_concurrent: int = _f(2, ge=1)
    epochs: int = _f(4, ge=1)
    grace_period: int = _f(1, ge=1)
    reduction_factor: int = _f(2, ge=2)
    seed: int = 0
    lambda1: list[float] = _f(factory=lambda: [0.5, 2.0])
    lambda2: list[float] = _f(factory=lambda: [0.5, 2.0])
    gam_depth: list[int] = _f(factory=lambda: [1, 3])
    lr: list[float] = _f(factory=list, help="[low, high] log-uniform; empty = fixed")
    weight_decay: list[float] = _f(factory=list, help="[low, high] log-uniform; empty = fixed")
    workers_per_trial: int = _f(1, ge=1, help=">1 runs a TorchTrainer inside each trial")
    cpus_per_trial: float = _f(1.0, gt=0)
    gpus_per_trial: float = _f(0.0, ge=0)
    best_params_out: str = "params/best.yaml"


@dataclass
class TrackingConfig:
    """MLflow."""

    tracking_uri: str = _f("", help="empty = MLFLOW_TRACKING_URI or sqlite:///<repo>/.mlflow/mlflow.db")
    artifact_root: str = _f(".mlflow/artifacts")
    experiment: str = "amnet"
    registered_model: str = "amnet-tal"
    champion_alias: str = "champion"


@dataclass
class ExtractConfig:
    """I3D feature extraction from raw videos (``amnet extract``, see ``amnet.extract``)."""

    video_dir: str = _f("data/videos", help="folder of source videos (not recursive)")
    out_dir: str = _f("data/extracted", help="<video_id>.npy (T x C float32) + manifest.json")
    extensions: list[str] = _f(factory=lambda: [".mp4", ".avi", ".mkv", ".mov", ".webm"],
                               help="video file suffixes picked up in video_dir")
    fps: float = _f(30.0, gt=0, help="target fps: frames are resampled to it by timestamp")
    stride: int = _f(4, ge=1, help="frames (at the target fps) between snippets")
    window: int = _f(16, ge=1, help="frames per snippet")
    checkpoint: str = _f("", help="I3D RGB state dict (pytorch-i3d layout, e.g. rgb_imagenet.pt)")
    allow_random_init: bool = _f(False, help="tests/smoke only: random weights when no checkpoint")
    seed: int = _f(0, help="seed of the random init (allow_random_init only)")
    resize: int = _f(256, ge=8, help="short side after resizing, pixels")
    crop: int = _f(224, ge=8, help="centre crop side, pixels (<= resize); 224 for I3D")
    width: float = _f(1.0, gt=0, le=1, help="encoder channel multiplier; <1 only for tests")
    batch_size: int = _f(8, ge=1, help="windows per encoder batch")
    device: str = _f("auto", help="auto | cpu | cuda | cuda:N")
    on_error: Literal["skip", "fail"] = _f("skip", help="unreadable video: skip it or fail")
    flow: bool = _f(False, help="optical-flow stream; only off/false is supported (RGB only)")


@dataclass
class Config:
    """Everything an entry point needs; built once and passed down."""

    data: DataConfig = _f(factory=DataConfig)
    model: ModelConfig = _f(factory=ModelConfig)
    loss: LossConfig = _f(factory=LossConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    infer: InferConfig = _f(factory=InferConfig)
    eval: EvalConfig = _f(factory=EvalConfig)
    ray: RayConfig = _f(factory=RayConfig)
    sweep: SweepConfig = _f(factory=SweepConfig)
    tracking: TrackingConfig = _f(factory=TrackingConfig)
    extract: ExtractConfig = _f(factory=ExtractConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values (for MLflow params)."""
        return flatten(self.to_dict())

    def replace(self, *overrides: str) -> Config:
        """A copy with dotted ``key=value`` overrides applied and validated."""
        data = self.to_dict()
        for item in overrides:
            _apply_override(data, item, "<override>")
        return from_dict(data, "<override>")


# --------------------------------------------------------------------------- loading

def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# A params file is a few KiB; past these limits it is a mistake or an attack (a YAML "billion
# laughs" alias bomb expands a few hundred bytes into 10^9 nodes).
MAX_PARAMS_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (the stdlib loader keeps
    the last one silently: ``lr: 1e-4`` then ``lr: 1e-2`` trains with 1e-2)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *defaults' merges; keys given beside it override on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # unhashable key: the base class reports it
                    continue
                if repeated:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} (line {line})")
        self.key, self.line = key, line


def _expanded_nodes(node: yaml.Node, limit: int) -> int:
    """Nodes of ``node`` once every alias is expanded (shared subtrees counted each time they
    are used), computed on the node graph in time linear in its size; stops past ``limit``."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        sizes[id(n)] = total = min(total, limit + 1)
        return total

    return size(node)


def _yaml_error(e: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans lines)."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{e.problem or e.context or 'syntax error'}{where}"
    return " ".join(str(e).split())


def _parse_yaml(text: str, source: str) -> Any:
    """Parse params YAML with :class:`_StrictLoader`, refusing alias bombs and deep nesting
    (:class:`ConfigError` naming ``source``)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = _expanded_nodes(node, MAX_YAML_NODES)
        if n > MAX_YAML_NODES:
            raise ConfigError(f"{source}: YAML aliases expand to more than {MAX_YAML_NODES} "
                              "values (an alias bomb?); refusing to load it")
        return loader.construct_document(node)
    except _DuplicateKey as e:
        raise ConfigError(f"{source}: duplicate key {e.key!r} (line {e.line}); each key may "
                          "appear once per mapping") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_error(e)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_PARAMS_BYTES:
            raise ConfigError(f"{path}: {size} bytes is too large for a params file (limit "
                              f"{MAX_PARAMS_BYTES})")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read params file ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}"
                          "); save the params file as UTF-8") from None


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a params file, merging any ``base:`` chain underneath it."""
    try:
        path = path.resolve()
        found = path.is_file()
    except (OSError, ValueError):  # e.g. a NUL in the name
        raise ConfigError(f"params file not found: {str(path)!r}") from None
    if path in seen:
        raise ConfigError(f"{path}: circular 'base:' chain")
    if not found:
        where = f"{seen[-1]}: 'base': " if seen else ""
        raise ConfigError(f"{where}params file not found: {path}")
    raw = _parse_yaml(_read_text(path), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is not None and (not isinstance(base, str) or "\x00" in base):
        raise ConfigError(f"{path}: 'base' must be the file name of another params file "
                          f"(a string), got {_short(base)}")
    if seen:  # a base file: check its own keys and values here, so errors name this file
        _validate_alone(raw, path)
    if base:
        merged = _read_yaml(path.parent / base, (*seen, path))
        _deep_merge(merged, raw)
        return merged
    return raw


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 10
_REPR.maxlevel = 4


def _short(value: Any) -> str:
    """``repr`` for error messages, cut short (a hostile file may hold a huge value)."""
    return _REPR.repr(value)


def _validate_alone(raw: dict[str, Any], path: Path) -> None:
    data = Config().to_dict()
    _check_keys(raw, data, str(path), "")
    _deep_merge(data, raw)
    _build(Config, data, str(path), "")


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def _apply_override(data: dict[str, Any], item: str, source: str) -> None:
    if "=" not in item:
        raise ConfigError(f"{source}: override {item!r} is not of the form key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"{source}: unknown key {key!r}")
        node = node[p]
    if parts[-1] not in node:
        raise ConfigError(f"{source}: unknown key {key!r}")
    if not text.strip():
        node[parts[-1]] = ""
        return
    try:
        node[parts[-1]] = _parse_yaml(text, source)
    except ConfigError as e:
        if "not valid YAML" not in str(e):  # duplicate keys, alias bombs: refused
            raise
        node[parts[-1]] = text  # not YAML: taken as a plain string (e.g. a path)


def load_config(path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build the config from a params file (``None`` = built-in defaults) and overrides."""
    data = Config().to_dict()
    source = "<defaults>"
    if path is not None:
        source = str(path)
        file_data = _read_yaml(Path(path))
        _check_keys(file_data, data, source, "")
        _deep_merge(data, file_data)
    for item in overrides:
        _apply_override(data, item, f"{source} + override {item!r}")
    if overrides:
        source = f"{source} + overrides {list(overrides)}"
    return from_dict(data, source)


def _check_keys(given: dict[str, Any], schema: dict[str, Any], source: str, prefix: str) -> None:
    for k, v in given.items():
        if k not in schema:
            raise ConfigError(f"{source}: unknown key {prefix + k!r}")
        if isinstance(schema[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {prefix + k!r} must be a mapping, got {_short(v)}")
            _check_keys(v, schema[k], source, f"{prefix}{k}.")


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from nested plain data."""
    cfg = _build(Config, data, source, "")
    _check_consistency(cfg, source)
    return cfg


def _check_consistency(cfg: Config, source: str) -> None:
    """Rules that tie several keys together."""
    m = cfg.model
    if len(m.regression_ranges) != m.fpn_levels:
        raise ConfigError(f"{source}: 'model.regression_ranges' has {len(m.regression_ranges)} "
                          f"entries, expected one per level (model.fpn_levels={m.fpn_levels})")
    for i, r in enumerate(m.regression_ranges):
        if len(r) != 2 or not r[0] < r[1]:
            raise ConfigError(f"{source}: 'model.regression_ranges[{i}]' must be [low, high] "
                              f"with low < high, got {r!r}")
    if m.embed_dim % m.n_heads:
        raise ConfigError(f"{source}: 'model.embed_dim' ({m.embed_dim}) must be divisible by "
                          f"'model.n_heads' ({m.n_heads})")
    if m.short_levels >= m.fpn_levels:
        raise ConfigError(f"{source}: 'model.short_levels' must be < model.fpn_levels "
                          f"({m.fpn_levels}), got {m.short_levels}")
    if cfg.data.max_seq_len % (2 ** (m.fpn_levels - 1)):
        raise ConfigError(f"{source}: 'data.max_seq_len' ({cfg.data.max_seq_len}) must be a "
                          f"multiple of 2**(model.fpn_levels-1) = {2 ** (m.fpn_levels - 1)}")
    if not cfg.eval.tiou or any(not 0 < t <= 1 for t in cfg.eval.tiou):
        raise ConfigError(f"{source}: 'eval.tiou' must be a non-empty list in (0, 1], "
                          f"got {cfg.eval.tiou!r}")
    s = cfg.sweep
    for key in ("lambda1", "lambda2", "gam_depth", "lr", "weight_decay"):
        bounds = getattr(s, key)
        if bounds and (len(bounds) != 2 or bounds[0] > bounds[1]):
            raise ConfigError(f"{source}: 'sweep.{key}' must be [low, high] with low <= high "
                              f"(or empty), got {bounds!r}")


def _build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'} must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            raise ConfigError(f"{source}: unknown key {prefix + k!r}")
    kwargs = {}
    for name, f in names.items():
        key = prefix + name
        if name not in data:
            continue
        tp = hints[name]
        value = data[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, source, key + ".")
        else:
            kwargs[name] = _coerce(value, tp, source, key)
            _check_range(kwargs[name], f.metadata, source, key)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    bad = _TypeMismatch(source, key, tp, value)  # message built only when raised
    if origin is Literal:
        if not _is_hashable(value) or value not in typing.get_args(tp):
            raise ConfigError(f"{source}: {key!r} must be one of "
                              f"{list(typing.get_args(tp))}, got {_short(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise bad
        (inner,) = typing.get_args(tp)[:1]
        return [_coerce(v, inner, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, source, key)
            except ConfigError:
                continue
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    if tp is type(None):
        if value is None:
            return None
        raise bad
    return value


class _TypeMismatch(ConfigError):
    def __init__(self, source: str, key: str, tp: Any, value: Any) -> None:
        self.args_ = (source, key, tp, value)
        super().__init__()

    def __str__(self) -> str:
        source, key, tp, value = self.args_
        return f"{source}: {key!r} expects {_type_name(tp)}, got {_short(value)}"


def _is_hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) in (list, tuple):
        return f"list[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _check_range(value: Any, meta: Any, source: str, key: str) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, list):
            for x in v:
                _check_range(x, meta, source, key)
            continue
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        ranged = any(meta.get(op) is not None for op in ("ge", "gt", "le", "lt"))
        if ranged and not math.isfinite(v):  # inf passes '> 0'; nan fails it by accident
            raise ConfigError(f"{source}: {key!r} must be a finite number, got {v!r}")
        for op, bound, ok in (("ge", meta.get("ge"), lambda a, b: a >= b),
                              ("gt", meta.get("gt"), lambda a, b: a > b),
                              ("le", meta.get("le"), lambda a, b: a <= b),
                              ("lt", meta.get("lt"), lambda a, b: a < b)):
            if bound is not None and not ok(v, bound):
                sym = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
                raise ConfigError(f"{source}: {key!r} must be {sym} {bound}, got {v!r}")


def schema_help() -> str:
    """A one-line-per-key description of every setting (for ``amnet config --help``)."""
    lines = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".")
            else:
                help_ = f.metadata.get("help", "")
                lines.append(f"{prefix}{f.name}: {_type_name(tp)}  {help_}".rstrip())

    walk(Config, "")
    return "\n".join(lines)
