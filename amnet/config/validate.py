"""What a valid value is: each setting's type and range, checked when a config is built.

:func:`setting` declares a dataclass field with its range (``ge``/``gt``/``le``/``lt``) and a
one-line help; :func:`build` turns nested plain data into the dataclass, coercing each value to
its annotated type and refusing a wrong type, an out-of-range or a non-finite number with a
:class:`ConfigError` that names the key and the file it came from.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from dataclasses import field
from typing import Any, Literal

from amnet.errors import ConfigError

__all__ = ["build", "setting", "short", "type_name"]


def setting(default: Any = dataclasses.MISSING, *, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            factory: Any = None, help: str = "") -> Any:
    """A dataclass field carrying its valid range (checked by :func:`build`) and its help."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 100
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 10
_REPR.maxlevel = 4


def short(value: Any) -> str:
    """``repr`` for error messages, cut short (a hostile file may hold a huge value)."""
    return _REPR.repr(value)


def build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    """The dataclass ``cls`` from nested plain ``data``, every value typed and range-checked
    (``prefix``: the dotted key of ``cls`` in the whole config, for messages)."""
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
            kwargs[name] = build(tp, value, source, key + ".")
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
                              f"{list(typing.get_args(tp))}, got {short(value)}")
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
        return f"{source}: {key!r} expects {type_name(tp)}, got {short(value)}"


def _is_hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def type_name(tp: Any) -> str:
    """A type as the schema and the messages spell it (``int``, ``list[float]``, ``a | b``)."""
    if typing.get_origin(tp) is Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) in (list, tuple):
        return f"list[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
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
