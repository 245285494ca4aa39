"""``amnet features`` / DVC stage ``features``: build or import the feature set training reads.

* ``data.source=synthetic``: generate the embedded THUMOS14-shaped set into ``data.root``.
* ``data.source=synthetic_i3d``: generate full-scale synthetic I3D features under a real
  annotation file (``data.synthetic_i3d.annotations``, e.g. THUMOS14's, copied unmodified).
* ``data.source=release``: validate a public feature release (``data.release_dir`` of
  ``<video>.npy`` + ``data.release_annotations``) and bring it into ``data.root``, hardlinking
  each file when the filesystem allows it and copying otherwise (logged, and recorded in the
  manifest as ``source.transfer``).

A release tracked by DVC (``dvc add`` or ``dvc import-url`` of ``data.release_dir`` /
``data.release_annotations``, README "Share data") has a ``<name>.dvc`` file beside it; the
import then first checks the files against the checksum recorded there and refuses a release
that changed (naming the changed files when DVC's cache holds the recorded listing).

Either way ``data.root`` ends up with ``<video>.npy`` + ``annotations.json`` +
``manifest.json``. The folder is built beside ``data.root`` and swapped in only when complete,
so a failed run never leaves a half-written set behind. Files in ``data.root`` may be hardlinks
to the release: never write into them in place (this stage never does).

Usage: ``amnet features -p params/default.yaml [-s key=value ...]`` or
``python -m workflows.features -p ... [-s ...]`` (the DVC stage).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from amnet.data.annotations import AnnotationSet, load_annotations
from amnet.data.features import feature_path
from amnet.data.manifest import ANNOTATIONS_FILE, MANIFEST_FILE, describe_features, write_manifest
from amnet.data.synthetic import generate_synthetic
from amnet.data.synthetic_i3d import generate_synthetic_i3d
from amnet.errors import ConfigError, DataError
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

__all__ = ["add_arguments", "check_release_checksum", "dvc_md5", "prepare_features", "run",
           "summarize"]

log = logging.getLogger(__name__)


def prepare_features(cfg: WorkflowConfig) -> Path:
    """Make ``cfg.data.root`` hold the configured feature set (see module docstring)."""
    d = cfg.data
    root = Path(d.root)
    if root.name in ("", ".", ".."):  # the swap needs a named folder of its own
        raise ConfigError(f"'data.root' ({d.root!r}) must name a folder of its own, e.g. "
                          "data/features")
    if d.source == "release":
        _check_apart(root, d.release_dir)
    _check_replaceable(root)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        if d.source == "synthetic":
            s = d.synthetic
            for key in ("feature_dim", "num_classes"):
                if getattr(s, key) != getattr(d, key):
                    raise ConfigError(f"'data.synthetic.{key}' ({getattr(s, key)}) must equal "
                                      f"'data.{key}' ({getattr(d, key)})")
            generate_synthetic(s, tmp, stride=d.stride, window=d.window)
        elif d.source == "synthetic_i3d":
            generate_synthetic_i3d(d.synthetic_i3d, tmp, feature_dim=d.feature_dim,
                                   num_classes=d.num_classes, stride=d.stride, window=d.window,
                                   default_fps=d.default_fps, segment_policy=d.segment_policy)
        else:
            _import_release(cfg, tmp)
        _swap_in(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def _check_apart(root: Path, release_dir: str) -> None:
    """Refuse a ``data.root`` that is, contains or lies inside ``data.release_dir``: the swap
    replaces ``data.root`` whole, which would delete the release's files (those the
    annotations do not list) or write into the release."""
    if not release_dir:
        return  # reported by _import_release
    r, s = root.resolve(), Path(release_dir).resolve()
    if r == s or s in r.parents or r in s.parents:
        how = "is" if r == s else "lies inside" if s in r.parents else "contains"
        raise ConfigError(f"'data.root' ({root}) {how} 'data.release_dir' ({release_dir}): "
                          "importing would replace the release's own files; point data.root "
                          "at a separate folder")


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that is not a feature set (e.g. ``data.root=.`` by mistake)."""
    if not root.exists():
        return
    if not root.is_dir():
        raise DataError(f"data.root {root} exists and is not a folder")
    foreign = [p.name for p in root.iterdir()
               if not (p.is_file() and (p.suffix == ".npy"
                                        or p.name in (ANNOTATIONS_FILE, MANIFEST_FILE)))]
    if foreign:
        raise DataError(f"data.root {root} holds other things than a feature set "
                        f"({sorted(foreign)[:5]}); refusing to replace it")


def _swap_in(tmp: Path, root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    if root.exists():
        root.rename(old)
    tmp.rename(root)
    if old.exists():
        shutil.rmtree(old)


def _import_release(cfg: WorkflowConfig, out: Path) -> None:
    d = cfg.data
    for key in ("release_dir", "release_annotations"):
        if not getattr(d, key):
            raise ConfigError(f"'data.{key}' must be set when data.source=release")
    src = Path(d.release_dir)
    if not src.is_dir():
        raise DataError(f"data.release_dir: feature folder not found: {src}")
    for key in ("release_dir", "release_annotations"):
        check_release_checksum(Path(getattr(d, key)), what=f"data.{key}")
    ann = load_annotations(d.release_annotations, default_fps=d.default_fps,
                           segment_policy=d.segment_policy)
    missing = [v for v in sorted(ann.videos)
               if not feature_path(src, v, source=ann.source).is_file()]
    if missing:
        raise DataError(f"{src}: no feature file for {len(missing)} of {len(ann.videos)} "
                        f"annotated videos, e.g. {missing[:5]} (expected <video_id>.npy for each "
                        f"video of {d.release_annotations})")
    if len(ann.classes) > d.num_classes:
        raise DataError(f"{d.release_annotations}: {len(ann.classes)} classes but "
                        f"data.num_classes={d.num_classes}")
    out.mkdir(parents=True)
    entries: dict[str, dict[str, Any]] = {}
    modes = {"hardlink": 0, "copy": 0}
    from amnet.progress import progress

    for vid in progress(sorted(ann.videos), desc="import features", unit="video"):
        path = feature_path(src, vid)
        entries[vid] = describe_features(path, vid, d.feature_dim)  # validates the file
        try:
            os.link(path, feature_path(out, vid))
            modes["hardlink"] += 1
        except OSError:  # other filesystem, or not allowed to link a file we do not own
            shutil.copyfile(path, feature_path(out, vid))
            modes["copy"] += 1
    shutil.copyfile(d.release_annotations, out / ANNOTATIONS_FILE)
    transfer = "hardlink" if not modes["copy"] else "copy" if not modes["hardlink"] else "mixed"
    log.info("imported %d feature files from %s: %d hardlinked, %d copied", len(entries), src,
             modes["hardlink"], modes["copy"])
    write_manifest(out, stride=d.stride, window=d.window, classes=ann.classes,
                   default_fps=d.default_fps, segment_policy=d.segment_policy, entries=entries,
                   annotations=ann,
                   source={"kind": "release", "release_dir": d.release_dir,
                           "release_annotations": d.release_annotations, "transfer": transfer,
                           "hardlinked": modes["hardlink"], "copied": modes["copy"]})


# --------------------------------------------------------------------------- release checksums

def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dir_entries(path: Path) -> list[dict[str, str]]:
    return [{"md5": _md5_file(p), "relpath": p.relative_to(path).as_posix()}
            for p in path.rglob("*") if p.is_file()]


def dvc_md5(path: Path) -> str:
    """The checksum DVC 3 records for ``path`` in a ``.dvc`` file: the file's md5, or for a
    folder the md5 of its listing (JSON of ``{"md5", "relpath"}`` sorted by relpath, keys
    sorted) followed by ``.dir``."""
    if path.is_file():
        return _md5_file(path)
    listing = sorted(_dir_entries(path), key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def _recorded_listing(dvc_file: Path, md5: str) -> dict[str, str] | None:
    """The per-file md5s of a folder checksum, from the DVC cache of the repo holding
    ``dvc_file`` (None when that cache does not have it)."""
    for parent in dvc_file.resolve().parents:
        obj = parent / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
        if (parent / ".dvc").is_dir():
            if not obj.is_file():
                return None
            try:
                return {e["relpath"]: e["md5"] for e in json.loads(obj.read_text())}
            except (ValueError, KeyError, TypeError):
                return None
    return None


def check_release_checksum(path: Path, *, what: str = "release") -> str | None:
    """Compare ``path`` with the checksum in ``<path>.dvc`` beside it (written by ``dvc add`` /
    ``dvc import-url``); no ``.dvc`` file, no check. Returns the checksum checked, raises
    DataError when the bytes differ (a release must never change under a feature set)."""
    dvc_file = path.with_name(path.name + ".dvc")
    if not dvc_file.is_file():
        return None
    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
        want = str(outs[0]["md5"])
    except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError):
        raise DataError(f"{dvc_file}: not a DVC file with an output md5") from None
    got = dvc_md5(path)
    if got == want:
        log.info("%s %s matches %s (%s)", what, path, dvc_file.name, want)
        return want
    detail = ""
    listing = _recorded_listing(dvc_file, want) if want.endswith(".dir") else None
    if listing is not None:
        now = {e["relpath"]: e["md5"] for e in _dir_entries(path)}
        changed = sorted(k for k in listing.keys() & now.keys() if listing[k] != now[k])
        parts = [f"{label} {names[:5]}" for label, names in (
            ("changed", changed), ("missing", sorted(listing.keys() - now.keys())),
            ("new", sorted(now.keys() - listing.keys()))) if names]
        detail = "; " + ", ".join(parts)
    raise DataError(f"{what} {path} no longer matches {dvc_file} (md5 {got} != {want}{detail}). "
                    f"Restore it (`dvc checkout {dvc_file}` or `dvc pull {dvc_file}`) or, if the "
                    f"release really changed, record it (`dvc add {path}` / `dvc update "
                    f"{dvc_file}`) and commit the .dvc file")


def summarize(root: str | Path, cfg: WorkflowConfig) -> dict[str, dict[str, float]]:
    """Per-subset figures of a prepared set: videos, snippets/video, actions, median lengths."""
    from amnet.data.manifest import read_manifest

    root = Path(root)
    ann: AnnotationSet = load_annotations(root / ANNOTATIONS_FILE,
                                          default_fps=cfg.data.default_fps,
                                          segment_policy=cfg.data.segment_policy)
    m = read_manifest(root) or {"videos": {}}
    out = {}
    for subset in sorted({v.subset for v in ann.videos.values()}):
        st = ann.stats(subset)
        t = [m["videos"][v.video_id]["shape"][0] for v in ann.subset(subset)
             if v.video_id in m["videos"]]
        if t:
            st["snippets_per_video_median"] = float(np.median(t))
            st["snippets_per_video_mean"] = float(np.mean(t))
        out[subset] = st
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.overrides)
    root = prepare_features(cfg)
    print(f"feature set ({cfg.data.source}) ready in {root}")
    for subset, st in summarize(root, cfg).items():
        print(f"  {subset}: {st['videos']} videos, "
              f"{st.get('snippets_per_video_median', float('nan')):.0f} snippets/video (median), "
              f"{st['actions_per_video_mean']:.1f} actions/video (mean), "
              f"median duration {st['duration_median_s']:.1f} s, "
              f"median action {st['action_length_median_s']:.2f} s")
    return 0


if __name__ == "__main__":
    from workflows.cli import main

    sys.exit(main(["features", *sys.argv[1:]]))
