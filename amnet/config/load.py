"""Loading a config: params YAML (strict), ``base:`` chains and dotted ``key=value`` overrides.

``params/<file>.yaml`` may chain ``base: other.yaml`` (merged underneath it) and is read with a
strict loader (a repeated key, an alias bomb, deep nesting, a huge or non-UTF-8 file are
refused); every error is a :class:`ConfigError` naming the key and the file it came from.
Functions take the ``schema`` to build (:class:`Config` by default; the workflow passes
``workflows.config.WorkflowConfig``, which adds its own sections).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from amnet.config.schema import Config
from amnet.config.validate import build, short
from amnet.errors import ConfigError

__all__ = ["MAX_PARAMS_BYTES", "MAX_YAML_NODES", "apply_override", "from_dict", "load_config"]

C = TypeVar("C", bound=Config)


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


def _read_yaml(path: Path, schema: type[Config], seen: tuple[Path, ...] = ()) -> dict[str, Any]:
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
                          f"(a string), got {short(base)}")
    if seen:  # a base file: check its own keys and values here, so errors name this file
        _validate_alone(raw, path, schema)
    if base:
        merged = _read_yaml(path.parent / base, schema, (*seen, path))
        _deep_merge(merged, raw)
        return merged
    return raw


def _validate_alone(raw: dict[str, Any], path: Path, schema: type[Config]) -> None:
    data = schema().to_dict()
    _check_keys(raw, data, str(path), "")
    _deep_merge(data, raw)
    build(schema, data, str(path), "")


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def apply_override(data: dict[str, Any], item: str, source: str) -> None:
    """Set the dotted ``key=value`` ``item`` in nested ``data`` (the value parsed as YAML, else
    taken as a plain string); an unknown key is a :class:`ConfigError` naming ``source``."""
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
                overrides: list[str] | tuple[str, ...] = (), *,
                schema: type[C] = Config) -> C:
    """Build the config from a params file (``None`` = built-in defaults) and overrides."""
    data = schema().to_dict()
    source = "<defaults>"
    if path is not None:
        source = str(path)
        file_data = _read_yaml(Path(path), schema)
        _check_keys(file_data, data, source, "")
        _deep_merge(data, file_data)
    for item in overrides:
        apply_override(data, item, f"{source} + override {item!r}")
    if overrides:
        source = f"{source} + overrides {list(overrides)}"
    return from_dict(data, source, schema=schema)


def _check_keys(given: dict[str, Any], schema: dict[str, Any], source: str, prefix: str) -> None:
    for k, v in given.items():
        if k not in schema:
            raise ConfigError(f"{source}: unknown key {prefix + k!r}")
        if isinstance(schema[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {prefix + k!r} must be a mapping, got {short(v)}")
            _check_keys(v, schema[k], source, f"{prefix}{k}.")


def from_dict(data: dict[str, Any], source: str = "<dict>", *,
              schema: type[C] = Config,
              only_known_sections: bool = False) -> C:
    """Build and validate a ``schema`` config from nested plain data.

    ``only_known_sections``: drop top-level sections ``schema`` does not have (a config stored
    by the workflow, read back by the method, carries the workflow's sections too).
    """
    if only_known_sections and isinstance(data, dict):
        known = {f.name for f in dataclasses.fields(schema)}
        data = {k: v for k, v in data.items() if k in known or not isinstance(v, dict)}
    cfg = build(schema, data, source, "")
    cfg.check(source)
    return cfg
