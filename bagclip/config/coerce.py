"""Every setting into its field's type, whatever its source (Python, JSON/YAML, `--set`).

`coerce(name, type, value)` dispatches on the field's resolved type (typing.get_type_hints),
never on the annotation's text, so any field of the supported shapes works: int, float,
bool, str, tuple[int, ...], list[int], tuple[float, float], dict[str, str], and `X | None`.
Strings such as "1e-3" (YAML reads it so), "no" for a bool and "6,12" for a list are read;
never 1.5 for an int, never NaN or infinity. Every problem is a ConfigError naming the field.
"""
from __future__ import annotations

import math
import re
import types
import typing
from typing import Any

from ..errors import ConfigError

_TRUE, _FALSE, _NONE = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("none", "null", "")


def as_int(name: str, v: Any) -> int:
    if isinstance(v, str) and re.fullmatch(r"\s*[+-]?\d+\s*", v):
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    hint = f", e.g. {int(v)}" if isinstance(v, float) and math.isfinite(v) and v == int(v) else ""
    raise ConfigError(f"{name}={v!r} must be a whole number{hint}", name)


def as_float(name: str, v: Any) -> float:
    x = None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
    elif isinstance(v, str):
        try:
            x = float(v)  # YAML reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    if x is None:
        raise ConfigError(f"{name}={v!r} is not a number; give a finite number such as 1e-3", name)
    if not math.isfinite(x):
        raise ConfigError(f"{name}={v!r}: NaN and infinity are not allowed; give a finite number", name)
    return x


def as_bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise ConfigError(f"{name}={v!r} must be true or false", name)


def as_str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{name}={v!r} must be a string", name)
    return v


_SCALARS = {int: as_int, float: as_float, bool: as_bool, str: as_str}


def _items(name: str, v: Any, what: str) -> list:
    """A list/tuple value, or a string such as "6,12" / "[6 12]" split into its items."""
    if isinstance(v, str):
        v = [p for p in re.split(r"[\s,\[\]()]+", v) if p]
    if not isinstance(v, (list, tuple)):
        raise ConfigError(f"{name}={v!r} must be a list of {what}", name)
    return list(v)


def _as_names(name: str, v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
        raise ConfigError(f"{name} must map folder names to prompt names (strings), e.g. "
                          f'{{"pcb1": "printed circuit board"}}; got {v!r}', name)
    return dict(v)


def _optional(tp) -> tuple[Any, bool]:
    """(the type inside `X | None`, True) or (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def coerce(name: str, tp, v: Any) -> Any:
    """v in the type `tp` of the field `name`, or ConfigError."""
    tp, optional = _optional(tp)
    if optional and (v is None or (isinstance(v, str) and v.strip().lower() in _NONE)):
        return None
    if tp in _SCALARS:
        return _SCALARS[tp](name, v)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict and args == (str, str):
        return _as_names(name, v)
    if origin in (tuple, list) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        what = {int: "whole numbers, e.g. [6, 12, 18, 24]", float: "numbers, e.g. [0.5, 0.999]",
                str: "strings", bool: "true / false values"}[args[0]]
        return origin(_SCALARS[args[0]](name, x) for x in _items(name, v, what))
    if origin is tuple and all(a in _SCALARS for a in args):  # fixed length, e.g. Adam's betas
        if not isinstance(v, (list, tuple)) or len(v) != len(args):
            raise ConfigError(f"{name}={v!r} must be two numbers [b1, b2], e.g. [0.5, 0.999]"
                              if len(args) == 2 else f"{name}={v!r} must be {len(args)} values", name)
        return tuple(_SCALARS[a](name, x) for a, x in zip(args, v))
    raise TypeError(f"Config field {name}: no coercion for type {tp!r}")  # a bug in Config, not input
