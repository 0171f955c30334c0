"""The class-level query sets of a corpus evaluation, each with its source and checked for leakage into training.

- `same-llm-heldout`: the corpus's held-out descriptions (`descriptions/test`): the training LLM and prompts, so
  they flatter a model that learned that LLM's style;
- `cross-llm`: descriptions by another describer (`queries/cross_llm`, written by `wvlp describe` with a
  `query_describer`);
- `cupl`: CuPL's GPT-3 descriptions of the ImageNet classes mapped to the labels (`wvlp.data.query_sets`).

Every set is checked against the training descriptions and the knowledge sentences the corpus attached to them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from wvlp.data.query_sets import CUPL_CLASSES, check_leakage, cupl_queries

QUERY_SETS = ("same-llm-heldout", "cross-llm", "cupl")


@dataclass
class QuerySet:
    """Texts with their class labels (in the images' label space) and where they come from."""

    name: str
    texts: list[str]
    labels: np.ndarray
    source: dict


def _described_source(name: str, rows: datasets.Dataset, what: str) -> dict:
    return {
        "what": what,
        "llm": sorted(set(rows["llm"])),
        "prompt_ids": sorted(set(rows["prompt_id"])),
        "count": len(rows),
    }


def corpus_query_sets(
    folder: str | Path, label_names: Sequence[str], names: str | Sequence[str] = "auto"
) -> tuple[list[QuerySet], dict[str, str]]:
    """The query sets of a corpus folder and, under "auto", the reasons the unavailable ones were left out.

    `names`: "auto" (every set the corpus supports that passes the leakage check) or a list of QUERY_SETS, which
    then must all be available and clean: a leaking set raises, naming the overlap.
    """
    folder = Path(folder)
    explicit = names != "auto"
    wanted = list(QUERY_SETS if not explicit else names)
    unknown = sorted(set(wanted) - set(QUERY_SETS))
    if unknown:
        raise ValueError(f"query sets {unknown} are unknown: choose among {list(QUERY_SETS)}")
    descriptions = datasets.load_dataset(str(folder), "descriptions")
    train = descriptions["train"]
    forbidden = {
        "training_descriptions": train["text"],
        "knowledge_index": [
            text for split in descriptions.values() for row in split["knowledge_texts"] for text in row
        ],
    }
    sets, skipped = [], {}
    for name in wanted:
        try:
            query_set = _load_set(folder, name, descriptions, list(label_names))
            check_leakage(name, query_set.texts, **forbidden)
        except (LookupError, ValueError) as err:
            if explicit:
                raise
            skipped[name] = str(err)
            continue
        sets.append(query_set)
    return sets, skipped


def _load_set(folder: Path, name: str, descriptions: datasets.DatasetDict, label_names: list[str]) -> QuerySet:
    if name == "same-llm-heldout":
        rows = descriptions["test"]
        source = _described_source(name, rows, "held-out descriptions by the training LLM and prompts")
        return QuerySet(name, list(rows["text"]), np.asarray(rows["label"], np.int64), source)
    if name == "cross-llm":
        if not (folder / "data" / "queries").is_dir():
            raise LookupError(f"{folder} has no queries config: describe it with a query_describer")
        rows = datasets.load_dataset(str(folder), "queries")["cross_llm"]
        source = _described_source(name, rows, "descriptions by another describer, quality-filtered")
        return QuerySet(name, list(rows["text"]), np.asarray(rows["label"], np.int64), source)
    if not set(CUPL_CLASSES) <= set(label_names):
        raise LookupError(f"no CuPL class mapping for the labels {label_names}")
    rows = cupl_queries(label_names)
    source = {
        "what": "CuPL GPT-3 descriptions of the ImageNet classes mapped to the labels",
        "llm": ["GPT-3 (CuPL)"],
        "classes": {name: list(cupl) for name, cupl in CUPL_CLASSES.items()},
        "count": len(rows),
    }
    return QuerySet(name, [r["text"] for r in rows], np.asarray([r["label"] for r in rows], np.int64), source)


__all__ = ["QUERY_SETS", "QuerySet", "corpus_query_sets"]
