"""Hostile input loses nothing: malformed and hostile inputs through the real ``amnet`` CLI.

Each case builds its inputs in a fresh folder (beside a ``victim.txt`` and a ``victim.npy``
that a path escape would read, overwrite or delete), runs ``python -m workflows.cli`` in a
subprocess with that folder as the working directory, and asserts:

* exit code 2 and no ``Traceback`` on stderr;
* exactly one ``ERROR`` line, naming the file / field / video (the case's fragments);
* not one file or folder under the case's folder was created, changed or removed (a sha256
  tree of it before and after).

Only cheap commands run (``config``, ``features``, ``eval``, ``detect``, ``extract`` and an
``evaluate`` that fails before inference): no training. Each subprocess costs ~0.1-0.2 s of
start-up (``config``/``features``/``eval``) or ~1.5 s where torch is imported.
Cases that still misbehave in code owned elsewhere are ``xfail(strict=True)``: the marker
comes off once the behaviour is fixed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["A", "B", "C"]
DIM = 16
# the tiny AMNet of tests/workflows/test_detect.py (the architecture is not what is tested)
TINY_MODEL = ["model.embed_dim=32", "model.n_heads=2", "model.fpn_levels=3",
              "model.gam_depth=1", "model.ame_layers=1", "model.head_layers=1",
              "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "data.max_seq_len=64",
              f"data.num_classes={len(CLASSES)}", f"data.feature_dim={DIM}"]


# --------------------------------------------------------------------------- the world

def video(subset: str = "Validation", label: str = "A", seg: list[float] | None = None
          ) -> dict[str, Any]:
    return {"subset": subset, "duration": 10.0, "fps": 10.0,
            "annotations": [{"label": label, "segment": seg or [1.0, 4.0]}]}


def feats(t: int = 22, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(0).random((t, dim), dtype=np.float32)


DB = {"a": video(), "b": video("Test", "B")}


class World:
    """One case's folder: ``victim.txt``, ``victim.npy``, ``data/`` and the shared assets."""

    def __init__(self, root: Path, assets: dict[str, Path]) -> None:
        self.root = root
        self.assets = assets
        self.victim = root / "victim.txt"
        self.victim.write_text("precious\n")
        np.save(root / "victim.npy", feats())  # what an absolute id would have read
        self.data = root / "data"
        self.data.mkdir()

    # -- files
    def write(self, rel: str, content: str | bytes | dict | list) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def params(self, content: str | bytes | dict, rel: str = "data/params.yaml") -> Path:
        return self.write(rel, content if isinstance(content, str | bytes)
                          else yaml.safe_dump(content))

    def asset(self, name: str, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.assets[name], path)
        return path

    # -- `amnet features` on a release
    def release(self, db: dict[str, Any] | None = None, *, ann_text: str | bytes | None = None,
                arrays: dict[str, np.ndarray | bytes] | None = None,
                root: Path | None = None, release_dir: Path | None = None,
                **data: Any) -> list[str]:
        """A feature release (``<id>.npy`` for each annotated id, created wherever the id
        points, so an escape would have found its file) + params; the ``features`` argv."""
        db = DB if db is None else db
        rel = release_dir or self.data / "release"
        rel.mkdir(parents=True, exist_ok=True)
        for vid in db:
            try:
                path = rel / f"{vid}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, feats())
            except (OSError, ValueError):  # e.g. a NUL in the id: no such file can exist
                pass
        for name, arr in (arrays or {}).items():
            if isinstance(arr, bytes):
                (rel / name).write_bytes(arr)
            else:
                np.save(rel / name, arr, allow_pickle=True)
        ann = self.data / "ann.json"
        if ann_text is None:
            ann.write_text(json.dumps({"database": db}))
        else:
            self.write("data/ann.json", ann_text)
        cfg = {"source": "release", "release_dir": str(rel), "release_annotations": str(ann),
               "root": str(root or self.data / "features"), "feature_dim": DIM,
               "num_classes": 4, "stride": 4, "window": 16, **data}
        return ["features", "-p", str(self.params({"data": cfg}))]

    # -- a prepared feature set (what `amnet features` writes) for `amnet evaluate`
    def prepared(self, dim: int = DIM, edit: Callable[[dict], None] | None = None,
                 db: dict[str, Any] | None = None, classes: list[str] = CLASSES) -> Path:
        from amnet.data.manifest import write_manifest

        root = self.data / "features"
        root.mkdir()
        db = db or {"a": video(), "b": video("Test", "B")}
        for vid in db:
            np.save(root / f"{vid}.npy", feats(dim=dim))
        (root / "annotations.json").write_text(json.dumps({"database": db}))
        m = write_manifest(root, stride=4, window=16, classes=classes)
        if edit is not None:
            edit(m)
            (root / "manifest.json").write_text(json.dumps(m))
        return root

    def evaluate(self, dim: int = DIM, edit: Callable[[dict], None] | None = None, *,
                 db: dict[str, Any] | None = None, param_dim: int | None = None,
                 ckpt: str = "ckpt", manifest: bool = True, classes: list[str] = CLASSES,
                 run_file: str | bytes | dict | list | None = None,
                 extra: tuple[str, ...] = ()) -> list[str]:
        """``amnet evaluate`` of a tiny checkpoint on a prepared set; ``run_file`` given:
        tracked, into an MLflow store that must never be reached (nothing may be written)."""
        root = self.prepared(dim, edit, db, classes)
        if not manifest:
            (root / "manifest.json").unlink()
        model = self.asset(ckpt, "data/model.pt")
        cfg = {"data": {"root": str(root), "feature_dim": param_dim or dim,
                        "num_classes": len(CLASSES), "stride": 4, "window": 16},
               "train": {"device": "cpu"}}
        argv = ["evaluate", "-p", "", "--checkpoint", str(model)]
        if run_file is None:
            argv.append("--no-track")
        else:
            cfg["tracking"] = {"tracking_uri": f"sqlite:///{self.root / 'never' / 'x.db'}"}
            argv += ["--run-file", str(self.write("data/run.json", run_file))]
        argv[2] = str(self.params(cfg))
        return [*argv, *extra]

    # -- `amnet promote` with a run file (the store is the module's shared, empty one)
    def promote(self, run_file: str | bytes | dict | list) -> list[str]:
        params = self.params({"tracking": {"tracking_uri": self.assets["store"]}})
        return ["promote", "-p", str(params), "--run-file",
                str(self.write("data/run.json", run_file)), "--out", str(self.data / "r.json")]

    # -- `amnet detect`
    def detect(self, model: str, *extra: str, features: Path | None = None) -> list[str]:
        if features is None:
            features = self.data / "feats"
            features.mkdir(exist_ok=True)
            np.save(features / "v.npy", feats(20))
        return ["detect", str(features), "--model", model, *extra]

    # -- `amnet extract` with a previous manifest in the out folder
    def extract(self, videos: dict[str, Any], *, files: tuple[str, ...] = ()) -> list[str]:
        (self.data / "videos").mkdir()
        for name in files:
            (self.data / "videos" / name).write_bytes(b"not a video")
        out = self.data / "extracted"
        out.mkdir()
        (out / "manifest.json").write_text(json.dumps(
            {"format": "amnet-extract/1", "videos": videos, "skipped": []}))
        params = self.params({"extract": {
            "video_dir": str(self.data / "videos"), "out_dir": str(out),
            "allow_random_init": True, "width": 0.25, "resize": 40, "crop": 32,
            "device": "cpu"}})
        return ["extract", "-p", str(params)]

    # -- `amnet eval`
    def eval(self, gt: Any = None, pred: Any = None) -> list[str]:
        gt = {"database": {"v": {"subset": "Test", "annotations": [
            {"label": "A", "segment": [0.0, 10.0]}]}}} if gt is None else gt
        pred = {"results": {"v": [{"label": "A", "score": 0.9, "segment": [0.0, 10.0]}]}
                } if pred is None else pred
        g = self.write("data/gt.json", gt)
        p = self.write("data/pred.json", pred)
        return ["eval", str(g), str(p)]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real (untrained) tiny checkpoint, built once for the module."""
    import torch

    from amnet.config import load_config
    from amnet.engine import build_model, build_train_state, save_checkpoint

    folder = tmp_path_factory.mktemp("assets")
    cfg = load_config(None, TINY_MODEL)
    torch.manual_seed(0)
    model = build_model(cfg, DIM, len(CLASSES))
    ckpt = folder / "model.pt"
    save_checkpoint(ckpt, build_train_state(cfg, model, 1), cfg, extra={"classes": CLASSES})
    truncated = folder / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    nameless = folder / "nameless.pt"
    save_checkpoint(nameless, build_train_state(cfg, model, 1), cfg)
    return {"ckpt": ckpt, "truncated": truncated, "nameless": nameless,
            "store": f"sqlite:///{folder / 'store' / 'mlflow.db'}"}


@pytest.fixture(scope="module")
def store(assets: dict[str, Path]) -> str:
    """An empty MLflow store outside every case's folder (creating its schema takes ~7 s)."""
    uri = str(assets["store"])
    Path(uri[len("sqlite:///"):]).parent.mkdir()
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.tracking import "
                    "MlflowClient; MlflowClient(sys.argv[1]).search_experiments()", uri],
                   check=True, timeout=300, capture_output=True)
    return uri


# --------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    """``build(world)`` makes the inputs and returns the argv; ``expect``: fragments of the one
    error line (``{root}`` / ``{data}`` are the case's folders)."""

    id: str
    build: Callable[[World], list[str]]
    expect: tuple[str, ...]
    xfail: str = ""


def config_case(id: str, content: str | bytes | dict, *expect: str, extra: tuple[str, ...] = (),
                setup: Callable[[World], Any] | None = None) -> Case:
    def build(w: World) -> list[str]:
        if setup is not None:
            setup(w)
        return ["config", "-p", str(w.params(content)), *extra]
    return Case(f"params-{id}", build, expect)


def alias_bomb() -> str:
    text = 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    prev = "a"
    for name in "bcdefghij":
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
        prev = name
    return text + f"train:\n  lr: *{prev}\n"


def twice(outer: str, key: str, value: str) -> str:
    """JSON text ``{outer: {key: value, key: value}}``: one key repeated."""
    entry = f'"{key}": {value}'
    return f'{{"{outer}": {{{entry}, {entry}}}}}'


P = "{data}/params.yaml"
ANN = "{data}/ann.json"

PARAMS = [
    config_case("non-utf8", b"train:\n  epochs: \xff\xfe\n", P, "not UTF-8"),
    config_case("base-int", "base: 3\n", P, "'base' must be", "got 3"),
    config_case("base-list", "base: [a.yaml, b.yaml]\n", P, "'base' must be"),
    config_case("base-missing", "base: nope.yaml\n", P, "params file not found", "nope.yaml"),
    config_case("duplicate-key", "train:\n  lr: 1.0e-4\n  lr: 1.0e-2\n", P,
                "duplicate key 'lr'", "line 3"),
    config_case("duplicate-key-in-base", "base: base.yaml\n", "{data}/base.yaml",
                "duplicate key 'train'",
                setup=lambda w: w.params("train: {epochs: 1}\ntrain: {epochs: 2}\n",
                                         "data/base.yaml")),
    config_case("alias-bomb", alias_bomb(), P, "alias bomb"),
    config_case("oversized", "#" + "x" * (1 << 20) + "\n", P, "too large for a params file"),
    config_case("lr-inf", "train:\n  lr: .inf\n", P, "'train.lr' must be a finite number"),
    config_case("lr-1e999", "train:\n  lr: 1e999\n", P, "'train.lr' must be a finite number"),
    config_case("lambda1-nan", "loss:\n  lambda1: .nan\n", P,
                "'loss.lambda1' must be a finite number"),
    config_case("clip-grad-inf-override", {}, P, "'train.clip_grad' must be a finite number",
                extra=("-s", "train.clip_grad=inf")),
    config_case("unknown-key", {"train": {"epochz": 3}}, P, "unknown key 'train.epochz'"),
    config_case("wrong-type", {"train": {"epochs": "ten"}}, P, "'train.epochs' expects int"),
    config_case("top-level-list", "- a\n- b\n", P, "top level must be a mapping"),
    config_case("not-yaml", "train: [unclosed\n", P, "not valid YAML", "line 2"),
    config_case("deep-nesting", "[" * 5000 + "]" * 5000 + "\n", P, "nested too deeply"),
    config_case("circular-base", "base: params.yaml\n", P, "circular 'base:' chain"),
    config_case("override-without-value", {}, "override 'train.epochs'", "key=value",
                extra=("-s", "train.epochs")),
]


def release_case(id: str, *expect: str, xfail: str = "", **kw: Any) -> Case:
    return Case(f"annotations-{id}", lambda w: w.release(**kw), expect, xfail)


def bad_id_case(id: str, vid: str | Callable[[World], str], *expect: str) -> Case:
    def build(w: World) -> list[str]:
        v = vid(w) if callable(vid) else vid
        return w.release({v: video(), "b": video("Test", "B")})
    return Case(f"annotations-id-{id}", build, (ANN, "video id", "not a plain file name",
                                                *expect))


ANNOTATIONS = [
    bad_id_case("dotdot", "../../x", "'../../x'"),
    bad_id_case("dotdot-inside", "../release/a", "'../release/a'"),
    bad_id_case("absolute", lambda w: str(w.root / "victim"), "victim'"),
    bad_id_case("slash", "a/b", "'a/b'"),
    bad_id_case("nul", "a\x00b", "'a\\x00b'"),
    bad_id_case("newline", "a\nb", "'a\\nb'"),
    release_case("duplicate-video-id", ANN, "duplicate video id(s) ['a']",
                 ann_text=twice("database", "a", json.dumps(video()))),
    release_case("duplicate-field", ANN, "duplicate field name(s) ['subset']",
                 ann_text='{"database": {"a": {"subset": "Test", '
                 + json.dumps(video())[1:] + "}}"),
    release_case("missing-duration", ANN, "video 'a'", "missing field 'duration'",
                 db={"a": {"subset": "Validation", "fps": 10.0, "annotations": []}}),
    release_case("reversed-segment", ANN, "video 'a'", "end <= start",
                 db={"a": video(seg=[5.0, 2.0])}),
    release_case("not-json", ANN, "not valid JSON", ann_text="{database: "),
    release_case("not-utf8", ANN, "cannot read", ann_text=b'{"database": "\xff"}'),
    release_case("label-not-a-string", ANN, "video 'a'", "field 'label'",
                 db={"a": {**video(), "annotations": [{"label": 3, "segment": [1, 2]}]}}),
]


def overlap_case(id: str, where: Callable[[World], dict[str, Path]], *expect: str) -> Case:
    # extra.npy: a release file the annotations do not list (replacing data.root deleted it)
    return Case(f"data-root-{id}", lambda w: w.release(**where(w), arrays={
        "extra.npy": feats()}), ("'data.root'", *expect))


OVERLAP = [
    overlap_case("is-release", lambda w: {"root": w.data / "release"},
                 "is 'data.release_dir'"),
    overlap_case("inside-release", lambda w: {"root": w.data / "release" / "set"},
                 "lies inside 'data.release_dir'"),
    overlap_case("contains-release", lambda w: {"root": w.data,
                                                "release_dir": w.data / "inner"},
                 "contains 'data.release_dir'"),
    overlap_case("dot", lambda w: {"root": Path(".")}, "must name a folder of its own"),
]

REL = "{data}/release"
FEATURES = [
    release_case("wrong-dim", REL, "video 'a'", "feature dimension is 8, expected 16",
                 arrays={"a.npy": feats(dim=8)}),
    release_case("nan", REL, "video 'a'", "non-finite feature value",
                 arrays={"a.npy": np.where(np.arange(DIM) == 3, np.nan, feats())}),
    release_case("not-npy", REL, "video 'a'", "unreadable feature file",
                 arrays={"a.npy": b"this is not a numpy file"}),
    release_case("wrong-ndim", REL, "video 'a'", "expected rank 2",
                 arrays={"a.npy": np.zeros(DIM, np.float32)}),
    release_case("int-dtype", REL, "video 'a'", "not a float type",
                 arrays={"a.npy": np.zeros((22, DIM), np.int64)}),
    release_case("pickled-object", REL, "video 'a'", "unreadable feature file",
                 arrays={"a.npy": np.array([{"x": 1}], dtype=object)}),
]
FEATURES = [Case(c.id.replace("annotations-", "features-"), c.build, c.expect, c.xfail)
            for c in FEATURES]
FEATURES.append(Case("features-missing-file", lambda w: (
    w.release(), (w.data / "release" / "b.npy").unlink())[0],
    (REL, "no feature file for 1 of 2", "'b'")))



def synth_i3d(w: World, db: dict[str, Any] | None = None, *, ann: bool = True,
              **data: Any) -> list[str]:
    """``amnet features`` with ``data.source=synthetic_i3d`` over ``{data}/ann.json``."""
    path = w.data / "ann.json"
    if ann:
        w.write("data/ann.json", json.dumps({"database": DB if db is None else db}))
    cfg = {"source": "synthetic_i3d", "root": str(w.data / "features"), "feature_dim": DIM,
           "num_classes": 4, "stride": 4, "window": 16,
           "synthetic_i3d": {"annotations": str(path)}, **data}
    return ["features", "-p", str(w.params({"data": cfg}))]


FEATURES += [
    Case("synthetic-i3d-missing-annotations", lambda w: synth_i3d(w, ann=False),
         ("data.synthetic_i3d.annotations", "annotation file not found", "{data}/ann.json")),
    Case("synthetic-i3d-odd-dim", lambda w: synth_i3d(w, feature_dim=DIM + 1),
         ("'data.feature_dim'", "must be even")),
    Case("synthetic-i3d-video-id-dotdot", lambda w: synth_i3d(w, {"../victim": video()}),
         ("{data}/ann.json", "video id", "not a plain file name")),
    Case("synthetic-i3d-too-many-classes", lambda w: synth_i3d(w, {
        f"v{i}": video(label=f"L{i}") for i in range(5)}),
         ("{data}/ann.json", "5 classes", "data.num_classes=4")),
]

MAN = "{data}/extracted/manifest.json"
MANIFESTS = [
    Case("manifest-extract-file-dotdot",
         lambda w: w.extract({"gone": {"file": "../../victim.txt"}}),
         (MAN, "video 'gone'", "field 'file'", "'../../victim.txt'", "not a plain file name")),
    Case("manifest-extract-file-absolute",
         lambda w: w.extract({"gone": {"file": str(w.victim)}}),
         (MAN, "video 'gone'", "field 'file'", "victim.txt'", "not a plain file name")),
    Case("manifest-extract-video-id-dotdot",
         lambda w: w.extract({"../../victim": {"sha256": "0"}}),
         (MAN, "video id '../../victim'", "not a plain file name")),
    Case("manifest-extract-video-file-name-newline",
         lambda w: w.extract({}, files=("a\nb.mp4",)),
         ("{data}/extracted", "video 'a\\nb'", "not a plain file name")),
    Case("manifest-features-stride-string",
         lambda w: w.evaluate(edit=lambda m: m.update(stride="4")),
         ("{data}/features/manifest.json", "field 'stride'", "whole number", "'4'")),
    Case("manifest-features-fps-string",
         lambda w: w.evaluate(edit=lambda m: m["videos"]["a"].update(fps="fast")),
         ("{data}/features/manifest.json", "video 'a'", "field 'fps'", "'fast'")),
    Case("manifest-features-file-dotdot",
         lambda w: w.evaluate(edit=lambda m: m["videos"]["a"].update(file="../../victim.npy")),
         ("{data}/features/manifest.json", "video 'a'", "field 'file'", "not a plain file")),
    Case("manifest-detect-fps-string",
         lambda w: (w.write("data/feats/manifest.json", {"videos": {"v": {"fps": "fast"}}}),
                    w.detect(str(w.asset("ckpt", "data/model.pt"))))[1],
         ("{data}/feats/manifest.json", "video 'v'", "field 'fps'")),
]

GT, PRED = "{data}/gt.json", "{data}/pred.json"
GT_V = json.dumps({"subset": "Test", "annotations": [{"label": "A", "segment": [0, 10]}]})
PRED_OK = [{"label": "A", "score": 0.9, "segment": [0.0, 10.0]}]
EVAL = [
    Case("eval-pred-malformed", lambda w: w.eval(pred="{results: "), (PRED, "not valid JSON")),
    Case("eval-pred-score-not-a-number", lambda w: w.eval(pred={"results": {"v": [
        {"label": "A", "score": "high", "segment": [0, 10]}]}}), (PRED, "score")),
    Case("eval-pred-reversed-segment", lambda w: w.eval(pred={"results": {"v": [
        {"label": "A", "score": 0.5, "segment": [8, 2]}]}}), (PRED, "segment")),
    Case("eval-pred-results-not-an-object", lambda w: w.eval(pred={"results": [1, 2]}),
         (PRED, "results")),
    Case("eval-gt-malformed", lambda w: w.eval(gt="[1, 2"), (GT, "not valid JSON")),
    Case("eval-gt-segment-wrong-type", lambda w: w.eval(gt={"database": {"v": {
        "subset": "Test", "annotations": [{"label": "A", "segment": "0-10"}]}}}),
        (GT, "segment")),
    Case("eval-gt-missing", lambda w: ["eval", str(w.data / "nope.json"),
                                       str(w.write("data/pred.json", {"results": {}}))],
         ("nope.json", "not found")),
    Case("eval-gt-duplicate-key",
         lambda w: w.eval(gt=twice("database", "v", GT_V)),
         (GT, "duplicate")),
    Case("eval-pred-duplicate-key",
         lambda w: w.eval(pred=twice("results", "v", json.dumps(PRED_OK))),
         (PRED, "duplicate")),
]

MODELS = [
    Case("model-not-a-checkpoint",
         lambda w: w.detect(str(w.write("data/model.pt", b"PK\x03\x04 not a checkpoint"))),
         ("{data}/model.pt",)),
    Case("model-truncated",
         lambda w: w.detect(str(w.asset("truncated", "data/model.pt"))), ("{data}/model.pt",)),
    Case("model-nonexistent", lambda w: w.detect(str(w.data / "nope.pt")),
         ("checkpoint not found", "nope.pt")),
    Case("model-a-folder", lambda w: w.detect(str(w.data)), ("{data}",)),
    Case("model-uri-without-store",
         lambda w: w.detect("models:/amnet-tal@champion", "-p", str(w.params(
             {"tracking": {"tracking_uri": f"sqlite:///{w.data / 'absent.db'}"}}))),
         ("models:/amnet-tal@champion", "no MLflow store")),
    Case("model-features-of-another-dim",
         lambda w: w.detect(str(w.asset("ckpt", "data/model.pt")), features=(
             w.data / "wide", (w.data / "wide").mkdir(),
             np.save(w.data / "wide" / "v.npy", feats(dim=32)))[0]),
         ("{data}/wide", "feature dimension is 32, expected 16")),
    Case("evaluate-features-of-another-dim", lambda w: w.evaluate(dim=32),
         ("{data}/model.pt", "{data}/features/b.npy", "video 'b'", "dimension 32",
          "dimension 16")),
]

EV_CKPT, EV_ANN = "{data}/model.pt", "{data}/features/annotations.json"
EV_MAN, RUN = "{data}/features/manifest.json", "{data}/run.json"
EVALUATE = [  # all refused before inference, with every output left as it was
    Case("evaluate-model-classes-beyond-manifest",
         lambda w: w.evaluate(edit=lambda m: m.update(classes=["A", "B"])),
         (EV_CKPT, EV_MAN, "3 classes", "lists 2", "['C']")),
    Case("evaluate-model-classes-beyond-labels", lambda w: w.evaluate(manifest=False),
         (EV_CKPT, EV_ANN, "3 classes", "lists 2", "['C']")),
    Case("evaluate-label-not-a-model-class",
         lambda w: w.evaluate(db={"a": video(), "b": video("Test", "Z")},
                              classes=[*CLASSES, "Z"]),
         (EV_ANN, "['Z']", "not classes of the model", EV_CKPT)),
    Case("evaluate-checkpoint-without-class-names", lambda w: w.evaluate(ckpt="nameless"),
         (EV_CKPT, "no class names", EV_ANN)),
    Case("evaluate-params-dim-not-the-model's", lambda w: w.evaluate(param_dim=32),
         (P, "'data.feature_dim' is 32", EV_CKPT, "dimension 16")),
    Case("evaluate-checkpoint-missing",
         lambda w: [*w.evaluate()[:3], "--checkpoint", str(w.data / "nope.pt"), "--no-track"],
         ("checkpoint not found", "{data}/nope.pt")),
    Case("evaluate-plots-folder-not-ours", lambda w: w.evaluate(extra=("--plots", str(w.data))),
         ("{data}", "not outputs of this stage", "refusing to replace it")),
    Case("evaluate-plots-folder-is-cwd", lambda w: w.evaluate(extra=("--plots", ".")),
         ("ERROR amnet: .: is the working directory",)),
    Case("evaluate-metrics-is-a-folder",
         lambda w: w.evaluate(extra=("--metrics", str(w.data))), ("{data}", "is a folder")),
    Case("evaluate-outputs-overlap",
         lambda w: w.evaluate(extra=("--plots", str(w.root / "out"), "--predictions",
                                     str(w.root / "out" / "p.json"))),
         ("{root}/out/p.json", "lies inside the output folder {root}/out")),
    Case("run-file-not-json", lambda w: w.evaluate(run_file="{run_id: "),
         (RUN, "not valid JSON")),
    Case("run-file-not-utf8", lambda w: w.evaluate(run_file=b'{"run_id": "\xff"}'),
         (RUN, "not valid JSON")),
    Case("run-file-a-list", lambda w: w.evaluate(run_file=["0" * 32]),
         (RUN, "expected a JSON object")),
    Case("run-file-run-id-a-number", lambda w: w.evaluate(run_file={"run_id": 3}),
         (RUN, "field 'run_id'", "got 3")),
    Case("run-file-run-id-a-path", lambda w: w.evaluate(run_file={"run_id": "../../x"}),
         (RUN, "field 'run_id'", "'../../x'")),
    Case("run-file-a-folder",
         lambda w: (w.evaluate(run_file={}), (w.data / "run.json").unlink(),
                    (w.data / "run.json").mkdir())[0], (RUN, "is a folder")),
    Case("promote-run-file-run-id-a-list", lambda w: w.promote({"run_id": ["a"]}),
         (RUN, "field 'run_id'")),
    Case("promote-run-file-no-run-id", lambda w: w.promote({"model_uri": "x"}),
         (RUN, "no 'run_id' field")),
    Case("promote-run-not-in-store", lambda w: w.promote({"run_id": "f" * 32}),
         ("f" * 32, "not in the tracking store", "no run stands in", "`amnet evaluate`")),
]

URIS = [  # registered-model URIs that do not resolve in a real (empty) store
    Case("model-uri-unknown-name", lambda w: w.detect(
        "models:/nope@champion", "-p", str(w.params({"tracking": {
            "tracking_uri": w.assets["store"]}}))),
        ("models:/nope@champion", "cannot fetch model")),
    Case("model-uri-unknown-version", lambda w: w.detect(
        "models:/nope/3", "-p", str(w.params({"tracking": {
            "tracking_uri": w.assets["store"]}}))),
        ("models:/nope/3", "cannot fetch model")),
    Case("model-uri-no-alias-or-version", lambda w: w.detect("models:/nope"),
         ("models:/nope", "expected models:/<name>@<alias>")),
    Case("model-uri-runs-scheme", lambda w: w.detect("runs:/0123/model"),
         ("runs:/0123/model", "unsupported URI")),
]

CASES = [*PARAMS, *ANNOTATIONS, *OVERLAP, *FEATURES, *MANIFESTS, *EVAL, *MODELS, *EVALUATE,
         *URIS]


# --------------------------------------------------------------------------- the test

def tree(root: Path) -> dict[str, str]:
    """Every file (sha256) and folder under ``root``."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root) + "/"] = "dir"
        for f in files:
            p = os.path.join(folder, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", CI="true")
    return subprocess.run([sys.executable, "-m", "workflows.cli", "-q", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


def test_enough_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, assets: dict[str, Path],
                       request: pytest.FixtureRequest) -> None:
    if case.id.startswith(("promote-", "model-uri-unknown")):
        request.getfixturevalue("store")  # built on first use only
    w = World(tmp_path, assets)
    argv = case.build(w)
    before = tree(tmp_path)
    start = time.perf_counter()
    proc = run_cli(argv, tmp_path)
    seconds = time.perf_counter() - start
    after = tree(tmp_path)

    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files changed: {changed}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    names = {"root": str(tmp_path), "data": str(w.data)}
    missing = [f for f in (e.format(**names) for e in case.expect) if f not in errors[0]]
    assert not missing, f"{missing} not in: {errors[0]}"
    assert seconds < 30, f"{case.id} took {seconds:.1f} s"


# --------------------------------------------------------------------------- beyond exit 2

def run_patched(patch: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI with one fault injected: ``patch`` runs first (e.g. makes a step raise)."""
    code = (f"import sys\n{patch}\nfrom workflows.cli import main\n"
            "sys.exit(main(['-q', *sys.argv[1:]]))\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", CI="true")
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


FAULTS = {  # the last plot step fails, after the metrics, predictions and other plots exist
    "disk-full": "import errno, amnet.evaluation.plots as P\n"
                 "def boom(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')\n"
                 "P.plot_timeline = boom",
    "ctrl-c": "import amnet.evaluation.plots as P\n"
              "def boom(*a, **k): raise KeyboardInterrupt\n"
              "P.plot_timeline = boom",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_failing_evaluate_leaves_previous_outputs_byte_identical(
        fault: str, tmp_path: Path, assets: dict[str, Path]) -> None:
    w = World(tmp_path, assets)
    argv = w.evaluate()
    first = run_cli(argv, tmp_path)
    assert first.returncode == 0, first.stderr
    outputs = ["metrics/evaluate.json", "metrics/per_class_ap.json",
               "outputs/evaluate/predictions.json", "plots/evaluate/timeline.png"]
    assert all((tmp_path / o).is_file() for o in outputs)
    # the next evaluation scores other tIoUs: every file it wrote would differ
    before = tree(tmp_path)
    proc = run_patched(FAULTS[fault], [*argv, "-s", "eval.tiou=[0.5]"], tmp_path)
    assert tree(tmp_path) == before, proc.stderr
    if fault == "disk-full":
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = [x for x in proc.stderr.splitlines() if " ERROR " in x]
        assert "No space left on device" in line
    else:
        assert proc.returncode != 0


def test_label_only_in_the_test_subset_warns_once(tmp_path: Path,
                                                  assets: dict[str, Path]) -> None:
    """`amnet train` on a set whose class 'B' has actions only in the test subset (and 'C'
    none at all): one warning naming the annotation file and both labels."""
    w = World(tmp_path, assets)
    root = w.prepared()  # 'a' (Validation): A; 'b' (Test): B; manifest classes A, B, C
    params = w.params({"data": {"root": str(root), "feature_dim": DIM,
                                "num_classes": len(CLASSES), "stride": 4, "window": 16},
                       "train": {"device": "cpu", "epochs": 1, "batch_size": 1}})
    sets = [a for o in TINY_MODEL for a in ("-s", o)]
    proc = run_cli(["train", "-p", str(params), *sets, "--no-track", "--no-val",
                    "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json")],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    said = [x for x in proc.stderr.splitlines() if "learned from nothing" in x]
    assert len(said) == 1, proc.stderr
    assert str(root / "annotations.json") in said[0]
    assert "'B' (only in 'Test')" in said[0] and "'C' (no action at all)" in said[0]
