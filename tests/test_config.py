"""amnet.config + workflows.config: params files, base chains and overrides; every error names
the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amnet import config as method
from amnet.errors import ConfigError
from workflows.config import WorkflowConfig, load_config, schema_help

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_defaults_and_repo_params() -> None:
    cfg = load_config()
    assert isinstance(cfg, WorkflowConfig) and cfg.data.source == "synthetic"
    assert cfg.flat()["data.synthetic.n_train"] == cfg.data.synthetic.n_train
    for name in ("default", "thumos14", "anet13", "thumos14_synth"):
        assert isinstance(load_config(REPO / "params" / f"{name}.yaml"), WorkflowConfig)
    assert "data.synthetic.duration_scale: float" in schema_help()


def test_values_from_file_are_typed(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", {"train": {"epochs": 3, "lr": 1}, "data": {"name": 5}})
    cfg = load_config(p)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.lr, float) and cfg.train.lr == 1.0
    assert cfg.data.name == "5"


@pytest.mark.parametrize(("data", "key"), [
    ({"trian": {"epochs": 3}}, "'trian'"),
    ({"train": {"epoch": 3}}, "'train.epoch'"),
    ({"data": {"synthetic": {"n_videos": 3}}}, "'data.synthetic.n_videos'"),
])
def test_unknown_key(tmp_path: Path, data: dict, key: str) -> None:
    p = write(tmp_path / "p.yaml", data)
    with pytest.raises(ConfigError, match=rf"{p}: unknown key {key}"):
        load_config(p)


@pytest.mark.parametrize(("data", "expect"), [
    ({"train": {"epochs": "ten"}}, r"'train.epochs' expects int, got 'ten'"),
    ({"train": {"epochs": 2.5}}, r"'train.epochs' expects int"),
    ({"train": {"epochs": True}}, r"'train.epochs' expects int"),
    ({"model": {"ame": "yes"}}, r"'model.ame' expects bool"),
    ({"eval": {"tiou": 0.5}}, r"'eval.tiou' expects list"),
    ({"eval": {"tiou": [0.5, "x"]}}, r"'eval.tiou\[1\]' expects float"),
    ({"data": {"source": "youtube"}},
     r"'data.source' must be one of \['synthetic', 'release', 'synthetic_i3d'\]"),
    ({"train": "fast"}, r"'train' must be a mapping"),
])
def test_wrong_type(tmp_path: Path, data: dict, expect: str) -> None:
    p = write(tmp_path / "p.yaml", data)
    with pytest.raises(ConfigError, match=rf"{p}: {expect}"):
        load_config(p)


@pytest.mark.parametrize(("data", "expect"), [
    ({"train": {"epochs": 0}}, r"'train.epochs' must be >= 1, got 0"),
    ({"data": {"synthetic": {"duration_scale": 1.5}}},
     r"'data.synthetic.duration_scale' must be <= 1.0, got 1.5"),
    ({"data": {"synthetic": {"fps": 0}}}, r"'data.synthetic.fps' must be > 0"),
    ({"model": {"dropout": 1.0}}, r"'model.dropout' must be < 1"),
    ({"data": {"max_seq_len": 100}}, r"'data.max_seq_len' \(100\) must be a multiple of"),
    ({"model": {"embed_dim": 100, "n_heads": 3}}, r"'model.embed_dim' \(100\) must be divisible"),
    ({"model": {"fpn_levels": 3}}, r"'model.regression_ranges' has 6 entries"),
    ({"eval": {"tiou": [0.5, 1.5]}}, r"'eval.tiou' must be a non-empty list in \(0, 1\]"),
])
def test_out_of_range(tmp_path: Path, data: dict, expect: str) -> None:
    p = write(tmp_path / "p.yaml", data)
    with pytest.raises(ConfigError, match=rf"{p}: {expect}"):
        load_config(p)


def test_base_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"train": {"epochs": 5, "lr": 0.1}, "data": {"stride": 8}})
    write(tmp_path / "b.yaml", {"base": "a.yaml", "train": {"epochs": 7}})
    c = write(tmp_path / "c.yaml", {"base": "b.yaml", "data": {"window": 32}})
    cfg = load_config(c)
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.stride, cfg.data.window) == (7, 0.1, 8, 32)
    assert cfg.train.batch_size == WorkflowConfig().train.batch_size  # untouched keys keep defaults


def test_base_chain_errors_name_the_file_holding_the_key(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", {"train": {"epochz": 5}})
    c = write(tmp_path / "c.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match=rf"{a}: unknown key 'train.epochz'"):
        load_config(c)
    write(a, {"train": {"epochs": -1}})
    with pytest.raises(ConfigError, match=rf"{a}: 'train.epochs' must be >= 1"):
        load_config(c)
    write(a, {"base": "c.yaml"})
    with pytest.raises(ConfigError, match="circular 'base:' chain"):
        load_config(c)
    write(c, {"base": "missing.yaml"})
    with pytest.raises(ConfigError, match=r"params file not found: .*missing.yaml"):
        load_config(c)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"params file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    p = write(tmp_path / "p.yaml", "train: [unclosed")
    with pytest.raises(ConfigError, match=rf"{p}: not valid YAML"):
        load_config(p)
    write(p, "- a\n- b\n")
    with pytest.raises(ConfigError, match=rf"{p}: top level must be a mapping, got list"):
        load_config(p)
    write(p, "")
    assert load_config(p) == WorkflowConfig()


def test_overrides(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", {"train": {"epochs": 5}})
    cfg = load_config(p, ["train.epochs=9", "loss.lambda1=2", "eval.tiou=[0.5, 0.7]",
                          "data.root=some/where", "model.gam=false"])
    assert cfg.train.epochs == 9 and cfg.loss.lambda1 == 2.0 and cfg.eval.tiou == [0.5, 0.7]
    assert cfg.data.root == "some/where" and cfg.model.gam is False
    assert cfg.replace("train.epochs=2").train.epochs == 2 and cfg.train.epochs == 9


@pytest.mark.parametrize(("item", "expect"), [
    ("train.epoch=3", r"unknown key 'train.epoch'"),
    ("nothing.here=3", r"unknown key 'nothing.here'"),
    ("train.epochs", r"override 'train.epochs' is not of the form key=value"),
    ("train.epochs=many", r"'train.epochs' expects int, got 'many'"),
    ("train.epochs=0", r"'train.epochs' must be >= 1"),
])
def test_bad_override_names_key_and_file(tmp_path: Path, item: str, expect: str) -> None:
    p = write(tmp_path / "p.yaml", {"train": {"epochs": 5}})
    with pytest.raises(ConfigError, match=rf"{p}.*{expect}"):
        load_config(p, [item])


def test_exponent_without_dot_is_a_float() -> None:
    # YAML 1.1 reads "1e-3" as a string; an override must still mean the number.
    from amnet.config import load_config as _load

    assert _load(None, ["train.lr=1e-3"]).train.lr == 1e-3


def _alias_bomb(levels: int = 9) -> str:
    text = 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    prev = "a"
    for name in "bcdefghijk"[:levels - 1]:
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
        prev = name
    return text + f"train:\n  lr: *{prev}\n"


@pytest.mark.parametrize(("text", "expect"), [
    (b"train:\n  lr: 1.0e-4\n  epochs: \xff\n", r"not UTF-8 text \(byte 30"),
    ("base: 3\n", r"'base' must be the file name of another params file \(a string\), got 3"),
    ("base: [a.yaml]\n", r"'base' must be .* got \['a.yaml'\]"),
    ("train:\n  lr: 1.0e-4\n  lr: 1.0e-2\n", r"duplicate key 'lr' \(line 3\)"),
    ("train: {epochs: 2}\ntrain: {epochs: 3}\n", r"duplicate key 'train' \(line 2\)"),
    (_alias_bomb(), r"YAML aliases expand to more than 100000 values"),
    ("train:\n  lr: .inf\n", r"'train.lr' must be a finite number, got inf"),
    ("train:\n  lr: 1e999\n", r"'train.lr' must be a finite number, got inf"),
    ("loss:\n  lambda1: .nan\n", r"'loss.lambda1' must be a finite number, got nan"),
    ("train:\n  clip_grad: -.inf\n", r"'train.clip_grad' must be a finite number"),
    ("[" * 5000 + "]" * 5000 + "\n", r"YAML nested too deeply"),
    ("train: [unclosed\n", r"not valid YAML: .*\(line 2, column 1\)$"),
])
def test_hostile_params_files(tmp_path: Path, text: str | bytes, expect: str) -> None:
    p = tmp_path / "p.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=rf"{p}: {expect}") as e:
        load_config(p)
    assert "\n" not in str(e.value)


def test_alias_bomb_fails_fast_and_small_anchors_still_work(tmp_path: Path) -> None:
    import time

    p = write(tmp_path / "p.yaml", _alias_bomb(10))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(p)
    assert time.perf_counter() - start < 1.0
    write(p, "sweep:\n  lambda1: &r [0.5, 2.0]\n  lambda2: *r\n")
    assert load_config(p).sweep.lambda2 == [0.5, 2.0]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", "train:\n  <<: {epochs: 3, lr: 0.1}\n  epochs: 5\n")
    cfg = load_config(p)
    assert (cfg.train.epochs, cfg.train.lr) == (5, 0.1)


def test_oversized_params_file(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"too large for a params file"):
        load_config(p)


def test_base_errors_name_the_referring_file(tmp_path: Path) -> None:
    c = write(tmp_path / "c.yaml", {"base": "missing.yaml"})
    with pytest.raises(ConfigError, match=rf"{c}: 'base': params file not found: .*missing"):
        load_config(c)
    write(tmp_path / "a.yaml", "train:\n  epochs: 1\n  epochs: 2\n")
    write(c, {"base": "a.yaml"})
    with pytest.raises(ConfigError, match=r"a\.yaml: duplicate key 'epochs'"):
        load_config(c)


@pytest.mark.parametrize(("item", "expect"), [
    ("train.lr=inf", r"'train.lr' must be a finite number, got inf"),
    ("train.clip_grad=.nan", r"'train.clip_grad' must be a finite number"),
    ("model.regression_ranges={a: 1, a: 2}", r"duplicate key 'a'"),
])
def test_hostile_overrides(item: str, expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_config(None, [item])


def test_huge_values_are_cut_short_in_messages(tmp_path: Path) -> None:
    p = write(tmp_path / "p.yaml", {"train": {"epochs": list(range(5000))}})
    with pytest.raises(ConfigError, match=r"'train.epochs' expects int") as e:
        load_config(p)
    assert len(str(e.value)) < 300


def test_the_method_config_holds_only_the_method_sections(tmp_path: Path) -> None:
    cfg = method.load_config(None, ["train.epochs=2"])
    assert type(cfg) is method.Config and cfg.train.epochs == 2
    assert list(cfg.to_dict()) == ["data", "model", "loss", "train", "infer", "eval"]
    assert "ray." not in method.schema_help() and "ray.num_workers: int" in schema_help()
    p = write(tmp_path / "p.yaml", {"ray": {"num_workers": 1}})
    with pytest.raises(ConfigError, match=rf"{p}: unknown key 'ray'"):
        method.load_config(p)
    assert load_config(p).ray.num_workers == 1


def test_a_stored_workflow_config_reads_back_as_either_schema() -> None:
    stored = load_config(None, ["ray.num_workers=2", "model.gam_depth=3"]).to_dict()
    with pytest.raises(ConfigError, match=r"<s>: unknown key 'ray'"):
        method.from_dict(stored, "<s>")
    cfg = method.from_dict(stored, "<s>", only_known_sections=True)
    assert type(cfg) is method.Config and cfg.model.gam_depth == 3
    with pytest.raises(ConfigError, match=r"<s>: unknown key 'bogus'"):
        method.from_dict({**stored, "bogus": 1}, "<s>", only_known_sections=True)
    full = method.from_dict(stored, "<s>", schema=WorkflowConfig)
    assert full.ray.num_workers == 2 and type(full.replace("sweep.epochs=2")) is WorkflowConfig


def test_sweep_bounds_are_checked_by_the_workflow_schema() -> None:
    with pytest.raises(ConfigError,
                       match=r"'sweep.lambda1' must be \[low, high\] with low <= high"):
        load_config(None, ["sweep.lambda1=[2.0, 0.5]"])
