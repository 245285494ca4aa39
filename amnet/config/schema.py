"""The method's settings: one dataclass per params section, each field with its type, default,
valid range and one-line help (``amnet config --schema`` prints them).

:class:`Config` holds the sections the method reads (``data``, ``model``, ``loss``, ``train``,
``infer``, ``eval``); the workflow (``workflows.config.WorkflowConfig``) extends it with its own
sections. Rules that tie several keys together live in :meth:`Config.check`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from amnet.config.validate import setting as _f  # short: every field below uses it
from amnet.config.validate import type_name
from amnet.errors import ConfigError

__all__ = ["Config", "DataConfig", "EvalConfig", "InferConfig", "LossConfig", "ModelConfig",
           "SyntheticConfig", "SyntheticI3DConfig", "TrainConfig", "flatten", "schema_help"]

C = TypeVar("C", bound="Config")


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
    attention_conv: int = _f(0, ge=0, help="kernel of a depthwise temporal conv (+ LayerNorm) "
                             "on the self-attention's query, key and value inputs, as "
                             "ActionFormer's convolutional projections (3 there); gives the "
                             "attention the order of its neighbours; 0 = linear projections "
                             "only (Eq. 5 as written)")
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
    ema_warmup: float = _f(10.0, ge=0, help="EMA decay after n updates: min(ema_decay, "
                           "(1+n)/(ema_warmup+n)), so short schedules do not average in the "
                           "initial weights; 0 = ema_decay from the first update")
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
    voting_thresh: float = _f(0.0, ge=0, le=1, help="after Soft-NMS, each kept detection's "
                              "boundaries become the score x tIoU weighted mean of the pre-NMS "
                              "candidates of its class overlapping it by this tIoU "
                              "(amnet/inference/voting.py); 0 = off")
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
class Config:
    """Everything the method needs; built once and passed down."""

    data: DataConfig = _f(factory=DataConfig)
    model: ModelConfig = _f(factory=ModelConfig)
    loss: LossConfig = _f(factory=LossConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    infer: InferConfig = _f(factory=InferConfig)
    eval: EvalConfig = _f(factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values (for MLflow params)."""
        return flatten(self.to_dict())

    def replace(self: C, *overrides: str) -> C:
        """A copy with dotted ``key=value`` overrides applied and validated."""
        from amnet.config.load import apply_override, from_dict

        data = self.to_dict()
        for item in overrides:
            apply_override(data, item, "<override>")
        return from_dict(data, "<override>", schema=type(self))

    def check(self, source: str) -> None:
        """Rules that tie several keys together (a subclass adds its own after these)."""
        m = self.model
        if len(m.regression_ranges) != m.fpn_levels:
            raise ConfigError(f"{source}: 'model.regression_ranges' has "
                              f"{len(m.regression_ranges)} entries, expected one per level "
                              f"(model.fpn_levels={m.fpn_levels})")
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
        if self.data.max_seq_len % (2 ** (m.fpn_levels - 1)):
            raise ConfigError(f"{source}: 'data.max_seq_len' ({self.data.max_seq_len}) must be a "
                              f"multiple of 2**(model.fpn_levels-1) = {2 ** (m.fpn_levels - 1)}")
        if not self.eval.tiou or any(not 0 < t <= 1 for t in self.eval.tiou):
            raise ConfigError(f"{source}: 'eval.tiou' must be a non-empty list in (0, 1], "
                              f"got {self.eval.tiou!r}")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → one mapping of dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def schema_help(schema: type[Config] = Config) -> str:
    """A one-line-per-key description of every setting of ``schema`` (``amnet config
    --schema``)."""
    lines = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, prefix + f.name + ".")
            else:
                help_ = f.metadata.get("help", "")
                lines.append(f"{prefix}{f.name}: {type_name(tp)}  {help_}".rstrip())

    walk(schema, "")
    return "\n".join(lines)
