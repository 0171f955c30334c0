"""The `wvlp-eval/1` evaluation JSON: its name and its validator, owned by the producer (`wvlp evaluate`).

Every metric is a fraction in [0, 1] (never percent) or null, except RSUM (the sum of six recalls) and the ranks.
The model card reads evaluations through `load_eval`, so a file the card cannot trust is refused with its path and
the field that is wrong.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = "wvlp-eval/1"
RETRIEVAL_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")
RANK_KEYS = ("i2t_mean_rank", "i2t_median_rank", "t2i_mean_rank", "t2i_median_rank")


class EvalFileError(ValueError):
    """An evaluation JSON that does not follow the `wvlp-eval/1` schema."""


def _fraction(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EvalFileError(f"{where} must be a number or null, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise EvalFileError(f"{where}={value} is not a fraction in [0, 1] (wvlp-eval/1 stores fractions, not percent)")
    return float(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise EvalFileError(f"{where} must be a non-negative number or null, got {value!r}")
    return float(value)


def _check_metrics(metrics: Mapping[str, Any], where: str) -> None:
    """Zero-shot, probe and retrieval blocks of `metrics` (`where` names it in errors)."""
    for section in ("zero_shot", "zero_shot_descriptions", "linear_probe"):
        values = metrics.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise EvalFileError(f"{where}.{section} must be a mapping")
        for name in ("top1", "top5", "seen_top1", "unseen_top1", "harmonic"):
            _fraction(values.get(name), f"{where}.{section}.{name}")
        for cls, value in (values.get("per_class") or {}).items():
            _fraction(value, f"{where}.{section}.per_class[{cls!r}]")
    retrieval = metrics.get("retrieval")
    if retrieval is not None:
        if not isinstance(retrieval, Mapping):
            raise EvalFileError(f"{where}.retrieval must be a mapping")
        default = retrieval.get("default", "itc")
        if default not in ("itc", "fused") or (default == "fused" and "fused" not in retrieval):
            raise EvalFileError(f"{where}.retrieval.default is {default!r}: 'itc', or 'fused' with a fused block")
        for mode in ("itc", "itm", "fused"):
            values = retrieval.get(mode)
            if values is None:
                continue
            for name in RETRIEVAL_KEYS:
                check = _number if name == "rsum" else _fraction
                check(values.get(name), f"{where}.retrieval.{mode}.{name}")
            for name in RANK_KEYS:
                _number(values.get(name), f"{where}.retrieval.{mode}.{name}")


def load_eval(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation as a dict, checked against `wvlp-eval/1` (a path to the JSON, or the parsed dict)."""
    where = "evaluation dict"
    if not isinstance(source, Mapping):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise EvalFileError(f"evaluation file {path} does not exist")
        try:
            source = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise EvalFileError(f"evaluation file {path} is not valid JSON: {err}") from err
    data = dict(source)
    if data.get("schema") != SCHEMA:
        raise EvalFileError(f"{where}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise EvalFileError(f"{where}: 'metrics' must be a non-empty mapping")
    for key in ("model", "data"):
        if not isinstance(data.get(key, {}), Mapping):
            raise EvalFileError(f"{where}: {key!r} must be a mapping")
    _check_metrics(metrics, f"{where}: metrics")
    query_sets = metrics.get("query_sets")
    if query_sets is not None:
        if not isinstance(query_sets, Mapping):
            raise EvalFileError(f"{where}: metrics.query_sets must be a mapping")
        for name, block in query_sets.items():
            if name == "skipped":
                continue
            if not isinstance(block, Mapping) or not isinstance(block.get("source"), Mapping):
                raise EvalFileError(f"{where}: metrics.query_sets.{name} must be a mapping with a 'source'")
            _check_metrics(block, f"{where}: metrics.query_sets.{name}")
    return data


def retrieval_modes(retrieval: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(mode, label) of each retrieval block present, the default (the one to quote) first, then ITC, then ITM-only."""
    fusion = retrieval.get("fusion") or {}
    chosen_on = (fusion.get("chosen_on") or {}).get("split")
    labels = {
        "itc": "ITC",
        "itm": f"ITM-only re-rank of the top {retrieval.get('itm_k', '?')} (ALBEF)",
        "fused": "ITC+ITM fused ("
        + "; ".join(f"{d} w={fusion[d]['itc_weight']:g} k={fusion[d]['k']}" for d in ("i2t", "t2i") if d in fusion)
        + (f"; chosen on {chosen_on}" if chosen_on else "")
        + ")",
    }
    default = retrieval.get("default", "itc")
    order = [default, *(mode for mode in ("itc", "fused", "itm") if mode != default)]
    return [(mode, labels[mode] + (", default" if mode == default else "")) for mode in order if mode in retrieval]


def query_set_summaries(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One summary per evaluated query set: name, source line, count, default-mode R@1 both ways, zero-shot top-1."""
    out = []
    for name, block in (metrics.get("query_sets") or {}).items():
        if name == "skipped":
            continue
        retrieval, source = block["retrieval"], block["source"]
        mode = retrieval.get("default", "itc")
        out.append(
            {
                "name": name,
                "what": f"{source.get('what', '')}; written by {', '.join(source.get('llm') or ['?'])}",
                "count": source.get("count"),
                "mode": mode,
                "t2i_r1": retrieval[mode]["t2i_r1"],
                "i2t_r1": retrieval[mode]["i2t_r1"],
                "itc_t2i_r1": retrieval["itc"]["t2i_r1"],
                "itc_i2t_r1": retrieval["itc"]["i2t_r1"],
                "zero_shot_top1": (block.get("zero_shot_descriptions") or {}).get("top1"),
            }
        )
    return out


__all__ = [
    "RANK_KEYS",
    "RETRIEVAL_KEYS",
    "SCHEMA",
    "EvalFileError",
    "load_eval",
    "query_set_summaries",
    "retrieval_modes",
]
