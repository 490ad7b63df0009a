"""The parameters a user passes to a generator or an injector (``--param key=value``, or a mapping in Python),
checked by one rule wherever they are passed: an unknown name or a value of the wrong kind is refused in one
line naming the parameter, its value and what is expected."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence

__all__ = ["checked", "kinds_of"]

_NAMES = {float: "a number", int: "an integer", str: "text", bool: "true or false", type(None): "null",
          Mapping: 'a JSON object, e.g. {"0": 0.9, "1": 0.1}', Sequence: 'a JSON list, e.g. ["a", "b"]'}


def kinds_of(hint) -> list:
    """The plain kinds in a type hint (``int | None`` -> [int, NoneType]); ``object`` means anything."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return [k for a in typing.get_args(hint) for k in kinds_of(a)]
    return [typing.get_origin(hint) or hint]


def _fits(value, kind) -> bool:
    if kind is object:
        return True
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if kind is int:  # an integral number is an integer: 4.0 is taken as 4
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind is Mapping:
        return isinstance(value, dict)
    if kind is Sequence:
        return isinstance(value, list)
    return kind in _NAMES and isinstance(value, kind)


def param_form(hint) -> str:
    """What a parameter of type ``hint`` is given as, in the words of :func:`checked`'s errors."""
    return _named(kinds_of(hint)) or "a value"


def _named(kinds: Sequence) -> str:
    return " or ".join(_NAMES[kind] for kind in kinds if kind in _NAMES)


def checked(owner: str, values: Mapping | None, takes: Mapping[str, Sequence]) -> dict:
    """``values`` checked against ``takes`` (each parameter's accepted kinds), integral numbers given for
    integers turned into ``int``; raises ``ValueError`` for an unknown name or a value that fits no kind."""
    values = dict(values or {})
    unknown = [k for k in values if k not in takes]
    if unknown:
        raise ValueError(f"{owner} does not take {unknown}; it takes: {', '.join(takes) or 'no parameters'}")
    for k, v in values.items():
        kinds = list(takes[k])
        fit = next((kind for kind in kinds if _fits(v, kind)), None)
        if fit is None:
            raise ValueError(f"parameter {k}={v!r} of {owner} must be {_named(kinds)}")
        if fit is int:
            values[k] = int(v)
    return values
