"""Checks a config mapping against a dataclass's type annotations and numeric ranges, before anything heavy runs.

YAML 1.1 reads `1e-4` as a float but `1e6` and `5e-5`-style values without a dot as strings; a float field takes
such a string when it parses as a number, as a reader of the YAML would expect.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Union

# field -> (low, high) inclusive, or (low, high, "exclusive"); None leaves that side open.
Ranges = dict[str, tuple]


def _name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_name(arm) for arm in typing.get_args(hint))
    base = typing.get_origin(hint) or hint
    if base in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of ({_name(args[0])})" if args and args[0] is not Any else "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a mapping"}.get(
        base, getattr(base, "__name__", str(base)))


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against the annotation `hint` (numeric strings become floats); ValueError naming `where`."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        arms = typing.get_args(hint)
        if value is None and type(None) in arms:
            return None
        for arm in (a for a in arms if a is not type(None)):
            try:
                return coerce(value, arm, where)
            except ValueError:
                continue
        raise ValueError(f"{where}={value!r}: expected {_name(hint)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(hint)[:1] or (Any,)
            return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif origin is dict or hint is dict:
        if isinstance(value, dict):
            return value
    else:
        return value  # a type this checker does not know: the constructor checks it
    raise ValueError(f"{where}={value!r}: expected {_name(hint)}")


def check_range(value: Any, bounds: tuple, where: str) -> None:
    """Raises ValueError naming `where` when the number `value` lies outside `bounds`."""
    if value is None or not isinstance(value, (int, float)):
        return
    low, high, *mode = bounds
    exclusive = mode == ["exclusive"]
    below = low is not None and (value <= low if exclusive else value < low)
    above = high is not None and (value >= high if exclusive else value > high)
    if below or above or (isinstance(value, float) and not math.isfinite(value)):
        left, right = ("(", ")") if exclusive else ("[", "]")
        shown = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{where}={value!r}: must be in {shown}")


def check_fields(cls: type, values: dict[str, Any], where: str, ranges: Ranges | None = None) -> dict[str, Any]:
    """`values` checked field by field against the dataclass `cls` (types from its annotations, then `ranges`)."""
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        label = f"{where}.{name}" if where else name
        checked[name] = coerce(value, hints[name], label) if name in hints else value
        if ranges and name in ranges:
            check_range(checked[name], ranges[name], label)
    return checked


__all__ = ["check_fields", "check_range", "coerce"]
