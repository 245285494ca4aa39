"""File helpers used everywhere: JSON read/write, CSV write, sha256, atomic writes, contained paths.

One place for these so that every stage reads JSON with the same errors (the file is named),
refuses duplicate keys, writes deterministically (sorted keys, trailing newline) and never
leaves a half-written file behind (temp file in the same folder + ``os.replace``).
:func:`staged_outputs` extends that to all the outputs of a stage together: written beside
their targets, moved into place only when every one of them was written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from amnet.errors import ConfigError, DataError

__all__ = [
    "FAST_JSON_BYTES",
    "MAX_JSON_BYTES",
    "PLOT_SUFFIXES",
    "StagedOutputs",
    "atomic_copy",
    "atomic_target",
    "atomic_write_bytes",
    "atomic_write_text",
    "dump_json",
    "json_text",
    "parse_json",
    "read_capped",
    "read_json",
    "read_json_object",
    "safe_child",
    "sha256_file",
    "staged_outputs",
    "write_json",
]

# A results file of a few million detections is ~0.5 GB; anything larger is a mistake.
MAX_JSON_BYTES = 2 << 30


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


#: From this size on, ``fast=True`` reads parse with orjson (several times the stdlib's speed on
#: a results file of 10^5–10^6 detections); smaller files, and any orjson refuses, take the
#: stdlib. Opt-in because orjson reads an integer past 64 bits as a float, which is harmless
#: for detections and annotations (all float64 seconds and scores) but not in general.
FAST_JSON_BYTES = 1 << 16


def _fast_parse(text: str | bytes, *, allow_duplicates: bool) -> tuple[bool, Any]:
    """``(True, value)`` when orjson parsed ``text`` and (unless ``allow_duplicates``) it
    provably has no repeated key; ``(False, None)`` → the caller takes the exact stdlib path.

    Duplicate check (orjson keeps the last of two equal keys silently): every ``:`` of JSON
    text separates a member or sits in a string, and orjson writes strings back without
    escaping ``:``, so re-serialising the parsed value gives as many ``:`` as the text has iff
    no member was lost. Only a ``\u003a`` escape could add one, so its presence sends the
    file to the stdlib too.
    """
    import orjson

    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    try:
        value = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):
        return False, None  # the stdlib names the error (or accepts NaN, huge ints, …)
    if allow_duplicates:
        return True, value
    if b"\\u003a" in data or b"\\u003A" in data:
        return False, None
    return orjson.dumps(value).count(b":") == data.count(b":"), value


def parse_json(text: str | bytes, source: str | Path, *, allow_duplicates: bool = False,
               fast: bool = False) -> Any:
    """Parse JSON ``text``; a syntax error or a duplicate key is a :class:`DataError` naming
    ``source`` (the stdlib silently keeps the last of two equal keys). ``fast``: large texts
    go through orjson first (:func:`_fast_parse`), with the same refusals and errors."""
    if fast and len(text) >= FAST_JSON_BYTES:
        ok, value = _fast_parse(text, allow_duplicates=allow_duplicates)
        if ok:
            return value
    try:
        if allow_duplicates:
            return json.loads(text)
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise DataError(f"{source}: duplicate key {e.key!r} in a JSON object") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{source}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{source}: JSON nested too deeply") from None


def read_capped(path: str | Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path``, refused (naming the file) when it is missing, a folder,
    unreadable or larger than ``limit``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(f"{path}: {size} bytes is too large for a JSON file "
                            f"(limit {limit})")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_json(path: str | Path, *, allow_duplicates: bool = False, fast: bool = False) -> Any:
    """The JSON value stored in ``path`` (errors name the file; see :func:`parse_json`)."""
    return parse_json(read_capped(path), path, allow_duplicates=allow_duplicates, fast=fast)


def read_json_object(path: str | Path, *, missing_ok: bool = True) -> dict[str, Any] | None:
    """A JSON object from ``path``; ``None`` when the file is absent and ``missing_ok``
    (sidecar files such as ``manifest.json``)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def json_text(obj: Any, indent: int | None = 2, *, sort_keys: bool = True) -> str:
    """Deterministic JSON: sorted keys (unless ``sort_keys=False``: the object's own order),
    fixed indent, trailing newline."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path`` to write; renamed onto ``path`` when the block completes,
    removed when it raises (an interrupt included), so ``path`` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would not
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` all-or-nothing (temp file in the same folder, then rename)."""
    path = Path(path)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` all-or-nothing (an interrupted copy leaves ``dst`` as it was)."""
    with atomic_target(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text to ``path``, all-or-nothing."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2, *,
               sort_keys: bool = True) -> Path:
    """Deterministic JSON (:func:`json_text`) to ``path``, atomically; creates parent folders."""
    return atomic_write_text(path, json_text(obj, indent, sort_keys=sort_keys))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file of ``header`` then ``rows``, atomically; creates parent folders."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def dump_json(obj: Any, path: str | Path) -> Path:
    """Same as :func:`write_json` with the manifest's compact indent (1)."""
    return write_json(path, obj, indent=1)


def safe_child(root: str | Path, name: str, *, what: str, source: str | Path) -> Path:
    """``root / name`` for a ``name`` that comes from data (a video id, a manifest entry).

    Refuses names that could leave ``root``: empty, absolute, containing a path separator,
    ``..``, a NUL or a control character. The error names ``source`` (the file the name came
    from) and ``what`` (e.g. ``"video id"``).
    """
    bad = (not isinstance(name, str) or not name or name in (".", "..")
           or "/" in name or "\\" in name or "\x00" in name
           or any(ord(c) < 32 for c in name) or os.path.isabs(name))
    if bad:
        raise DataError(f"{source}: {what} {name!r} is not a plain file name (no path "
                        "separators, '..', leading '/', or control characters)")
    root_r = Path(root).resolve()
    child = (root_r / name).resolve()
    if child.parent != root_r:
        raise DataError(f"{source}: {what} {name!r} resolves outside {root}")
    return Path(root) / name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# what a stage's output folder may hold for it to be replaced whole (plots, reports)
PLOT_SUFFIXES = frozenset({".png", ".svg", ".pdf", ".csv", ".json", ".md", ".txt"})


class StagedOutputs:
    """The output files and folders of one stage, written beside their targets first.

    :meth:`file` / :meth:`folder` return where to write a target now: ``<name>`` inside a
    hidden ``.amnet-stage-*`` folder in the target's parent (same file system, so the final
    move is a rename, and the real file name, so MLflow artifacts logged from there keep it).
    :meth:`commit` moves every target into place, restoring the previous ones if any move
    fails; :meth:`discard` removes what was staged, and the parent folders it had to create.
    Use it through :func:`staged_outputs`.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, tuple[Path, bool]] = {}  # target -> (staged path, is folder)
        self._tmp: dict[Path, Path] = {}  # parent folder -> its staging folder
        self._created: list[Path] = []  # parent folders created for staging (outermost first)

    def _stage(self, target: str | Path, folder: bool) -> Path:
        path = Path(os.path.abspath(target))
        if path in self._staged:
            raise ConfigError(f"{target}: given twice as an output of this stage")
        for other, (_, other_folder) in self._staged.items():
            if other_folder and other in path.parents:
                inner, outer = path, other
            elif folder and path in other.parents:
                inner, outer = other, path
            else:
                continue
            raise ConfigError(f"{inner}: lies inside the output folder {outer}; give outputs "
                              "that do not overlap")
        if path == Path(path.anchor):
            raise ConfigError(f"{target}: not a path an output can be written to")
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            self._created.append(p)
        if path.parent not in self._tmp:
            self._tmp[path.parent] = Path(tempfile.mkdtemp(prefix=".amnet-stage-",
                                                           dir=path.parent))
        staged = self._tmp[path.parent] / path.name
        if folder:
            staged.mkdir()
            os.chmod(staged, 0o777 & ~_umask())  # the folder lands in place as it is
        self._staged[path] = (staged, folder)
        return staged

    def file(self, target: str | Path) -> Path:
        """Where to write the output file ``target`` (refused when it is a folder)."""
        if Path(target).is_dir():
            raise ConfigError(f"{target}: is a folder; expected the path of an output file")
        return self._stage(target, folder=False)

    def folder(self, target: str | Path, *,
               allowed_suffixes: Iterable[str] = PLOT_SUFFIXES) -> Path:
        """An empty folder standing in for the output folder ``target``, which is replaced
        whole on commit. An existing ``target`` must look like a previous output: only files
        whose suffix is in ``allowed_suffixes`` (checked now, before any work), and neither
        the working directory nor one of its parents."""
        path = Path(target)
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{target}: exists and is not a folder; expected an output "
                                  "folder")
            if Path.cwd().resolve().is_relative_to(path.resolve()):
                raise ConfigError(f"{target}: is the working directory or one of its parents; "
                                  "give an output folder of its own")
            allowed = set(allowed_suffixes)
            foreign = sorted(str(p.relative_to(path)) for p in path.rglob("*")
                             if not p.is_dir() and (p.suffix not in allowed or p.is_symlink()))
            if foreign:
                raise ConfigError(f"{target}: holds files that are not outputs of this stage "
                                  f"({foreign[:5]}); refusing to replace it, give an output "
                                  "folder of its own")
        return self._stage(target, folder=True)

    def final(self, staged: str | Path) -> Path:
        """The path a staged file will have once committed (``staged`` or a file inside a
        staged folder)."""
        staged = Path(staged)
        for target, (where, _) in self._staged.items():
            if staged == where or where in staged.parents:
                return target / staged.relative_to(where)
        return staged

    def commit(self) -> None:
        """Move every staged output into place; a failing move puts the old ones back."""
        done: list[tuple[Path, Path | None]] = []  # (target, backup of the previous one)
        try:
            for target, (staged, folder) in self._staged.items():
                if not staged.exists():
                    raise DataError(f"{target}: the stage did not write this output")
                backup = None
                if target.exists() or target.is_symlink():
                    backup = staged.with_name(f".previous-{staged.name}")
                    if folder:
                        os.rename(target, backup)
                    else:  # keep the old file visible until the atomic replace
                        _link_or_copy(target, backup)
                done.append((target, backup))
                os.replace(staged, target)
        except BaseException:
            for target, backup in reversed(done):
                if backup is not None:
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    os.replace(backup, target)
                elif target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
            self.discard()
            raise
        self._created.clear()  # they hold outputs now
        self.discard()

    def discard(self) -> None:
        """Remove everything staged (and the parents made for it); the targets stay as they
        were."""
        for tmp in self._tmp.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self._tmp.clear()
        for p in reversed(self._created):
            with suppress(OSError):  # not empty: something else wrote there meanwhile
                p.rmdir()
        self._created.clear()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


@contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """All-or-nothing outputs for one stage::

        with staged_outputs() as out:
            write_json(out.file(args.metrics), metrics)
            write_plots(out.folder(args.plots))
        # here every output is in place; after an exception, none changed

    Ask for every :meth:`~StagedOutputs.file` / :meth:`~StagedOutputs.folder` first: their
    checks (a folder that is not a previous output, overlapping outputs) then fail before any
    work is done. Any exception, ``KeyboardInterrupt`` included, discards what was staged.
    """
    stage = StagedOutputs()
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.commit()
