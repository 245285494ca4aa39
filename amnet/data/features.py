"""Per-video feature files: ``<root>/<video_id>.npy`` holding a (T, C) float array.

Public I3D releases ship float32 or float64; everything is validated here and returned as
float32 so that a bad file fails before training with the file, the video and what was expected.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from amnet.data.feature_set import FEATURE_SUFFIX
from amnet.errors import DataError

__all__ = ["check_plain_name", "check_video_id", "feature_path", "load_feature_file", "read_header",
           "validate_features"]

FLOAT_KINDS = ("f",)


def check_plain_name(name: object, *, what: str, source: str | Path) -> str:
    """``name`` if it can name a file directly inside a folder, else a :class:`DataError`
    naming ``source`` (the file the name came from), ``what`` it is and the name.

    The rule of :func:`amnet.io.safe_child` (no path separator, ``..``, leading ``/``, NUL or
    other control character), checked on the name alone: names can be validated where they
    are parsed, and a feature file may be a symlink into a shared store (DVC's cache).
    """
    if not isinstance(name, str) or not name:
        raise DataError(f"{source}: {what} {name!r} must be a non-empty string")
    if (name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name)
            or any(ord(c) < 32 or c == "\x7f" for c in name)):
        raise DataError(f"{source}: {what} {name!r} is not a plain file name (no path "
                        "separators, '..', leading '/', NUL or control characters)")
    return name


def check_video_id(video_id: object, source: str | Path) -> str:
    """:func:`check_plain_name` for a video id: ids become ``<root>/<video_id>.npy``, so an id
    like ``../../x`` or ``/etc/x`` would read or write outside ``root``."""
    return check_plain_name(video_id, what="video id", source=source)


def feature_path(root: str | Path, video_id: str, *, source: str | Path | None = None) -> Path:
    """``<root>/<video_id>.npy`` for a checked id (:func:`check_video_id`; errors name
    ``source``, default ``root``)."""
    check_video_id(video_id, source if source is not None else root)
    return Path(root) / f"{video_id}{FEATURE_SUFFIX}"


def read_header(path: Path, video_id: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the ``.npy`` header only (no data read)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"video {video_id!r}: feature file not found: {path}") from None
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"video {video_id!r}: unreadable feature file {path}: {e} "
                        "(expected a .npy array of shape (T, C))") from None
    return tuple(arr.shape), arr.dtype


def validate_features(arr: np.ndarray, *, path: Path | str, video_id: str,
                      feature_dim: int | None = None) -> np.ndarray:
    """Check rank, length, dimension, dtype and finiteness; return a float32 (T, C) array."""
    where = f"video {video_id!r} ({path})"
    if arr.dtype.kind not in FLOAT_KINDS:
        raise DataError(f"{where}: feature dtype {arr.dtype} is not a float type "
                        "(expected float32 or float64)")
    if arr.ndim != 2:
        raise DataError(f"{where}: features have shape {tuple(arr.shape)} (rank {arr.ndim}); "
                        "expected rank 2, (T snippets, C channels)")
    t, c = arr.shape
    if t == 0:
        raise DataError(f"{where}: zero-length video: feature file has 0 snippets "
                        f"(shape {tuple(arr.shape)}; expected T >= 1)")
    if feature_dim is not None and c != feature_dim:
        raise DataError(f"{where}: feature dimension is {c}, expected {feature_dim} "
                        f"(data.feature_dim); shape {tuple(arr.shape)}")
    with np.errstate(over="ignore"):  # float64 beyond float32's range: reported below
        out = np.asarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)
        r, col = (int(x) for x in bad[0])
        src_bad = not np.isfinite(arr[r, col])  # else: finite float64 that overflows float32
        raise DataError(f"{where}: {len(bad)} non-finite feature value(s) (NaN/Inf"
                        f"{'' if src_bad else ' after conversion to float32'}), first at "
                        f"snippet {r}, channel {col} = {float(arr[r, col])}; "
                        "expected finite values")
    return out


def load_feature_file(path: str | Path, video_id: str, *, feature_dim: int | None = None,
                      with_sha256: bool = False) -> tuple[np.ndarray, str | None]:
    """Read and validate one feature file → (float32 (T, C), sha256 of the file bytes or None).

    The file is read once; the checksum (for the manifest) is taken from the same bytes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"video {video_id!r}: feature file not found: {path} "
                        f"(expected <root>/{video_id}.npy)") from None
    except OSError as e:
        raise DataError(f"video {video_id!r}: unreadable feature file {path}: {e}") from None
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"video {video_id!r}: unreadable feature file {path}: {e} "
                        "(expected a .npy array of shape (T, C))") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive loads as a mapping
        raise DataError(f"video {video_id!r}: {path} is not a single .npy array "
                        "(expected shape (T, C))")
    out = validate_features(arr, path=path, video_id=video_id, feature_dim=feature_dim)
    return out, (hashlib.sha256(raw).hexdigest() if with_sha256 else None)
