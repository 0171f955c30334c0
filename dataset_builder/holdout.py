"""The one rule for naming held-out classes, shared by describe, train and evaluate.

A held-out class is given by its label id (an int, or a string of digits as a command line gives it), by its
class name, or by any other name the caller knows it by (a source's stable class id `<source>:<name>`). Every
other item is an error that names the item, the setting it came from and what would have been accepted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def resolve_holdout(
    names_by_label: Mapping[int, Sequence[str]],
    items: Collection[int | str] | None,
    *,
    setting: str = "holdout_classes",
) -> frozenset[int]:
    """Label ids of the held-out `items`; `names_by_label` maps each label to the names it may be given by."""
    by_name = {name: label for label, names in names_by_label.items() for name in names}
    resolved = set()
    for item in items or ():
        if isinstance(item, bool):  # True is an int to Python, never a class to a user
            raise ValueError(f"{setting}: {item!r} is not a class; give a label id or a class name")
        if isinstance(item, str) and item in by_name:
            resolved.add(by_name[item])
            continue
        label = _as_label(item)
        if label is None:
            known = sorted(by_name)
            raise ValueError(
                f"{setting}: holdout class {item!r} is not a class name or label id "
                f"(names: {known[:20]}{' ...' if len(known) > 20 else ''})"
            )
        if label not in names_by_label:
            labels = sorted(names_by_label)
            span = f"{labels[0]}..{labels[-1]}" if labels else "none"
            raise ValueError(f"{setting}: holdout class {item!r} is not a label id (labels: {span})")
        resolved.add(label)
    return frozenset(resolved)


def names_by_index(label_names: Sequence[str]) -> dict[int, tuple[str]]:
    """`names_by_label` for labels 0..N-1 named by `label_names` (a corpus's `ClassLabel` names)."""
    return {label: (name,) for label, name in enumerate(label_names)}


def _as_label(item: object) -> int | None:
    """`item` as a label id, or None when it is not one (numpy integers count: labels often come from arrays)."""
    if isinstance(item, str):
        return int(item) if item.isdigit() else None
    try:
        return int(item) if int(item) == item else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
