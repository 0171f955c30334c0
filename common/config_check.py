"""Checks config values against a dataclass's annotated types and per-field rules, before anything heavy runs.

A value is converted to its field's type where a YAML reader would expect it (YAML 1.1 reads `1e-4` and `1e6`
without a dot as strings; `holdout_classes: Bag` is the one-item list ["Bag"]); otherwise the error names the
field and the value: `section.field=<value>: expected ...` or `...: must be ...`.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Union

Rule = Callable[[Any], str | None]  # what is wrong with a (type-checked) value, or None when it is fine


def at_least(low: int) -> Rule:
    """A number >= `low`."""
    return lambda value: None if value >= low else f"must be >= {low}"


def above(low: float) -> Rule:
    """A number > `low`."""
    return lambda value: None if value > low else f"must be > {low}"


def fraction(value: float) -> str | None:
    """A probability-like number in [0, 1)."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def one_of(*choices: str) -> Rule:
    """One of `choices`."""
    return lambda value: None if value in choices else f"expected one of {', '.join(choices)}"


def each(rule: Rule) -> Rule:
    """A non-empty list whose every item satisfies `rule`."""

    def check(values: list) -> str | None:
        if not values:
            return "must not be empty"
        problems = [f"item {value!r}: {problem}" for value in values if (problem := rule(value))]
        return problems[0] if problems else None

    return check


def between(low: float, high: float) -> Rule:
    """A number strictly between `low` and `high`."""
    return lambda value: None if low < value < high else f"must be in ({low}, {high})"


class _Mismatch(Exception):
    """A value does not have (and cannot be read as) the annotated type."""


def _describe(annotation: Any) -> str:
    """The annotated type in words, for error messages."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is list:
        return f"a list of ({_describe(args[0])})" if args else "a list"
    if origin is tuple:
        return f"a list of {len(args)} items ({', '.join(_describe(arg) for arg in args)})"
    named = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
        type(None): "null",
    }
    return named.get(origin or annotation, getattr(annotation, "__name__", str(annotation)))


def _number(value: Any) -> float:
    """A finite number from a YAML number or string: YAML 1.1 reads `1e-4` (no dot) as the string '1e-4'."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Mismatch
    try:
        number = float(value)
    except ValueError:
        raise _Mismatch from None
    if not math.isfinite(number):
        raise _Mismatch
    return number


def _convert(value: Any, annotation: Any) -> Any:
    """`value` read as the annotated type, or _Mismatch."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # Exact type first, so a string stays a string (a class name) in `int | str` rather than becoming a number.
        options = sorted((arg for arg in args if arg is not type(None)), key=lambda arg: type(value) is not arg)
        for option in options:
            try:
                return _convert(value, option)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is list:
        if isinstance(value, (str, int, float, bool)):
            value = [value]  # `holdout_classes: Bag` is the one class Bag, not the letters B, a, g
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_convert(item, args[0] if args else Any) for item in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(item, arg) for item, arg in zip(value, args))
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if not number.is_integer():
            raise _Mismatch
        return int(number)
    if annotation is float:
        # A YAML int stays an int (Python reads it as a float wherever one is needed): the run's config hash is kept.
        return value if isinstance(value, int) and not isinstance(value, bool) else _number(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    return value


def check_section(
    section: str, values: Any, fields: set[str], hints: dict[str, Any], rules: dict[str, Rule]
) -> dict[str, Any]:
    """The section's values converted to their annotated types (`hints`) and checked against `rules`
    (keyed by `section.field`, or by `field` for the unnamed top-level section `""`)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(
            f"{section or 'the config'}={values!r}: expected a mapping of {section or 'its'}.* keys (a YAML section)"
        )
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        where = f" in section '{section}'" if section else ""
        names = ", ".join(f"{section}.{k}" if section else k for k in unknown)
        raise ValueError(f"unknown key(s){where}: {names}")
    checked = dict(values)
    for key, annotation in hints.items():
        if key not in values:
            continue
        where, value = (f"{section}.{key}" if section else key), values[key]
        try:
            checked[key] = _convert(value, annotation)
        except _Mismatch:
            raise ValueError(f"{where}={value!r}: expected {_describe(annotation)}") from None
        rule = rules.get(where)
        problem = rule(checked[key]) if rule and checked[key] is not None else None
        if problem:
            raise ValueError(f"{where}={value!r}: {problem}")
    return checked


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """The dataclass's field annotations, resolved."""
    return typing.get_type_hints(cls)


__all__ = ["Rule", "above", "at_least", "between", "check_section", "each", "field_hints", "fraction", "one_of"]
