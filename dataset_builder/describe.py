"""Category descriptions from an LLM: resumable generation into a crash-safe cache, then cleaning and filtering."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from wvlp.common.safe_io import ProcessLock, atomic_write_text
from wvlp.data.llm import DescriptionBackend, GenerationRequest, GenerationResult
from wvlp.data.prompts import PromptTemplate, render, render_user_prompt
from wvlp.data.sources import ClassInfo

DECODING_DEFAULTS = {"max_new_tokens": 64, "temperature": 0.9, "top_p": 0.95}
DROP_REASONS = ("error", "empty", "refusal", "non_english", "too_short", "too_long", "off_topic", "duplicate")
# Settings that must match for a cached completion to stand for what this run would have generated.
_SETTINGS = ("template", "prompt", "llm", "llm_revision", "decoding", "base_seed")
_KEY_SEPARATOR = "|"


# ------------------------------------------------------------------------------------------------------ keys


def generation_key(class_id: str, prompt_id: str, sample_index: int) -> str:
    """The cache key of one sample: "<class_id>|<prompt_id>|<sample_index>"."""
    for part, value in (("class id", class_id), ("prompt id", prompt_id)):
        if _KEY_SEPARATOR in value:
            raise ValueError(f"{part} {value!r} contains {_KEY_SEPARATOR!r}, which separates the parts of a key")
    return f"{class_id}{_KEY_SEPARATOR}{prompt_id}{_KEY_SEPARATOR}{sample_index}"


def request_seed(base_seed: int, key: str) -> int:
    """A stable 31-bit sampling seed for `key` (the same in every run and process, unlike `hash`)."""
    digest = hashlib.sha256(f"{base_seed}{_KEY_SEPARATOR}{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFFFFFF


def description_id(key: str) -> str:
    """A stable id of the description generated for `key`."""
    return "d" + hashlib.sha256(key.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------- cache


class _JsonlLog:
    """An append-only JSONL file: every line is fsync'd when written; a torn last line is ignored and cut off."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self._good_size = 0  # bytes up to the end of the last complete, valid line
        self._file = None
        self._lock = threading.Lock()
        if path.exists():
            self._read()

    def _read(self) -> None:
        offset, corrupt = 0, None  # corrupt: (line number, error) of a bad line, fatal unless it is the last one
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if corrupt is not None:
                    number, err = corrupt
                    raise ValueError(f"{self.path}:{number}: corrupt line in the middle of the cache ({err})")
                if not line.endswith(b"\n"):
                    break  # a write cut short by a crash: ignored here, cut off before the next append
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
                        raise ValueError("not a record with a string 'key'")
                except ValueError as err:
                    corrupt = (number, err)
                    continue
                self.rows.append(row)
                offset += len(line)
        self._good_size = offset

    def append(self, row: dict) -> None:
        """Write `row` as one line and make it durable before returning."""
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size != self._good_size:
                    os.truncate(self.path, self._good_size)
                self._file = open(self.path, "ab")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._good_size += len(line)
            self.rows.append(row)

    def close(self) -> None:
        """Close the file handle (appending reopens it)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class GenerationCache:
    """Completed generations in an append-only JSONL file, and failed attempts in `<stem>.failures.jsonl`.

    Each completion is one fsync'd line, so a crash loses at most the line being written; loading ignores such a
    torn last line and the next append cuts it off. A key that appears twice keeps its first record. Failures are
    only a log: their keys stay missing, so a rerun retries them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.failures_path = self.path.with_name(f"{self.path.stem}.failures.jsonl")
        # One writer at a time: a second process would cut off the first one's fsync'd lines when it cuts a torn
        # last line of what it read at start.
        self._lock = ProcessLock(self.path, f"the generation cache {self.path}")
        self._lock.acquire()
        try:
            self._completed = _JsonlLog(self.path)
            self._failures = _JsonlLog(self.failures_path)
        except BaseException:
            self._lock.release()
            raise
        self._records: dict[str, dict] = {}
        for row in self._completed.rows:
            self._records.setdefault(row["key"], row)

    def completed_keys(self) -> set[str]:
        """Keys with a completed generation."""
        return set(self._records)

    def get(self, key: str) -> dict | None:
        """The completed record of `key`, if any."""
        return self._records.get(key)

    def records(self) -> list[dict]:
        """Completed records in the order they were written (first record per key)."""
        return list(self._records.values())

    def failures(self) -> list[dict]:
        """Every failed attempt logged so far, oldest first."""
        return list(self._failures.rows)

    def add(self, record: dict) -> None:
        """Append a completed record (ignored when its key is already completed)."""
        if record["key"] in self._records:
            return
        self._completed.append(record)
        self._records[record["key"]] = record

    def add_failure(self, record: dict) -> None:
        """Log a failed attempt; its key stays missing."""
        self._failures.append(record)

    def close(self) -> None:
        """Close the underlying files and release the lock."""
        self._completed.close()
        self._failures.close()
        self._lock.release()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ generation


def _check_decoding(decoding: dict | None) -> dict:
    decoding = dict(decoding or {})
    unknown = sorted(set(decoding) - set(DECODING_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown decoding key(s) {unknown}; allowed: {sorted(DECODING_DEFAULTS)}")
    merged = {**DECODING_DEFAULTS, **decoding}
    if not isinstance(merged["max_new_tokens"], int) or merged["max_new_tokens"] < 1:
        raise ValueError(f"decoding max_new_tokens must be a positive integer, got {merged['max_new_tokens']!r}")
    if not 0 <= float(merged["temperature"]):
        raise ValueError(f"decoding temperature must be >= 0, got {merged['temperature']!r}")
    if not 0 < float(merged["top_p"]) <= 1:
        raise ValueError(f"decoding top_p must be in (0, 1], got {merged['top_p']!r}")
    return {
        "max_new_tokens": merged["max_new_tokens"],
        "temperature": float(merged["temperature"]),
        "top_p": float(merged["top_p"]),
    }


def _check_inputs(classes: Sequence[ClassInfo], prompts: Sequence[PromptTemplate], samples_per_prompt: int) -> None:
    if not classes:
        raise ValueError("no classes to describe")
    if not prompts:
        raise ValueError("no prompt templates")
    if not isinstance(samples_per_prompt, int) or samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be a positive integer, got {samples_per_prompt!r}")
    for kind, ids in (("class id", [c.class_id for c in classes]), ("prompt id", [p.id for p in prompts])):
        duplicates = sorted(k for k, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate {kind}(s) {duplicates}")


def generate_descriptions(
    classes: Sequence[ClassInfo],
    prompts: Sequence[PromptTemplate],
    backend: DescriptionBackend,
    samples_per_prompt: int,
    cache_path: str | os.PathLike,
    decoding: dict | None,
    seed: int,
    with_gloss: bool = False,
    progress: bool = True,
) -> list[dict]:
    """One record per (class, prompt, sample), generating only the keys missing from the cache at `cache_path`.

    Records are in class, prompt, sample order. A key whose generation failed in this run is returned with `error`
    set (and `raw_text` None) and is retried by the next run.
    """
    _check_inputs(classes, prompts, samples_per_prompt)
    decoding = _check_decoding(decoding)
    planned: dict[str, dict] = {}
    for cls in classes:
        for template in prompts:
            for index in range(samples_per_prompt):
                key = generation_key(cls.class_id, template.id, index)
                planned[key] = {
                    "key": key,
                    "description_id": description_id(key),
                    "class_id": cls.class_id,
                    "label": cls.label,
                    "class_name": cls.name,
                    "prompt_id": template.id,
                    "template": template.template,
                    "prompt": render_user_prompt(template, cls, with_gloss),
                    "sample_index": index,
                    "llm": backend.name,
                    "llm_revision": backend.revision,
                    "decoding": decoding,
                    "seed": request_seed(seed, key),
                    "base_seed": seed,
                    "_messages": render(template, cls, with_gloss),
                }
    with GenerationCache(cache_path) as cache:
        _check_same_classes(cache, planned)
        _warn_on_stale(cache, planned)
        missing = [key for key in planned if cache.get(key) is None]
        failed: dict[str, dict] = {}
        lock = threading.Lock()
        bar = tqdm(
            total=len(planned), initial=len(planned) - len(missing), desc="describe", unit="gen", disable=not progress
        )

        def on_result(result: GenerationResult) -> None:
            plan = planned.get(result.key)
            if plan is None:
                warnings.warn(f"the backend returned a result for unknown key {result.key!r}; ignored", stacklevel=2)
                return
            record = _record(plan, result)
            with lock:
                if record["error"] is None:
                    cache.add(record)
                    failed.pop(result.key, None)
                else:
                    cache.add_failure(record)
                    failed[result.key] = record
                bar.update(1)

        requests = [
            GenerationRequest(key, planned[key]["_messages"], seed=planned[key]["seed"], **decoding) for key in missing
        ]
        try:
            if requests:
                backend.generate(requests, on_result)
        finally:
            bar.close()
        records = []
        for key, plan in planned.items():
            record = cache.get(key) or failed.get(key)
            if record is None:  # the backend broke its contract of one result per request
                record = _record(plan, GenerationResult(key, None, error="the backend returned no result", attempts=0))
                cache.add_failure(record)
            # Labels are positions and move when classes are added or removed; the class id does not.
            records.append({**record, "label": plan["label"]})
    return records


def _record(plan: dict, result: GenerationResult) -> dict:
    """The cache line of one result: the plan's provenance plus the text (or error) and when it was made."""
    record = {k: v for k, v in plan.items() if not k.startswith("_")}
    error = result.error
    if error is None and result.text is None:
        error = "the backend returned neither text nor an error"
    record.update(
        raw_text=result.text if error is None else None,
        error=error,
        attempts=result.attempts,
        latency_s=round(result.latency_s, 4),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return record


def _check_same_classes(cache: GenerationCache, planned: dict[str, dict]) -> None:
    """Refuse a cache whose records under a planned key describe another class (ids that were once positions)."""
    moved = sorted(
        {
            (cached["class_name"], plan["class_name"], plan["class_id"])
            for key, plan in planned.items()
            if (cached := cache.get(key)) is not None
            and cached.get("class_name", plan["class_name"]) != plan["class_name"]
        }
    )
    if moved:
        shown = "; ".join(
            f"{new!r} (id {class_id!r}) has cached descriptions of {old!r}" for old, new, class_id in moved[:5]
        )
        raise ValueError(
            f"{cache.path}: the cache belongs to other classes: {shown}. It was written when class ids "
            "were label positions; delete it or set another `cache` path to regenerate"
        )


def _warn_on_stale(cache: GenerationCache, planned: dict[str, dict]) -> None:
    """Warn when cached completions were made with other settings (they are reused as they are, not regenerated)."""
    stale: Counter[str] = Counter()
    for key, plan in planned.items():
        cached = cache.get(key)
        if cached is not None:
            stale.update(name for name in _SETTINGS if name in cached and cached[name] != plan[name])
    if stale:
        warnings.warn(
            f"{cache.path}: cached generations differ from this run in {dict(stale)} (count of records per setting); "
            "they are reused as they are: delete the cache (or use another path) to regenerate them",
            stacklevel=3,
        )


# -------------------------------------------------------------------------------------------------- cleaning

_LEADING_TOKENS = re.compile(r"^\s*(?:(?:<\|[^|>]{1,40}\|>|<s>|\[INST\])\s*(?:assistant|model)?\s*)+", re.IGNORECASE)
# After the answer, a special token or a role label at a line start opens the next turn: cut there.
_NEXT_TURN = re.compile(
    r"<\|[^|>]{1,40}\|>|</s>|\[/?INST\]|<</?SYS>>|\n\s*(?:user|human|system|assistant|###\s*instruction)\s*:",
    re.IGNORECASE,
)
_ROLE_PREFIX = re.compile(r"^\s*(?:assistant|ai|bot|answer|response|description|caption)\s*:\s*", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|great question|gladly)(?:[!.,:]+\s*|\s+)", re.IGNORECASE
)
_HERE_IS = re.compile(r"^here(?:'s|’s| is| are)\b[^:\n]{0,100}:\s*", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)]|#{1,6})(?:\s+|$)")
_EMPHASIS = re.compile(r"\*\*|__|`")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}
_COMPLETE = re.compile(r"[.!?][\"'”’)\]]*$")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)]*(?=\s+[\"'“‘(]?[A-Z0-9])")
_REFUSAL_ANYWHERE = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:sorry|unable|not able)\b|"
    r"\bi (?:cannot|can't|can not|won't) (?:provide|help|assist|describe|comply|generate|write|answer|fulfil)",
    re.IGNORECASE,
)
_REFUSAL_START = re.compile(r"^(?:sorry|i apologi[sz]e|unfortunately, i|i (?:cannot|can't|can not)\b)", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_ENGLISH_STOPWORDS = frozenset(
    "the a an and or of to in on at with for from by is are was be it its this that these those as has have "
    "which who usually often typically can may made".split()
)
# Frequent function words of other languages that are not also English words.
_FOREIGN_STOPWORDS = frozenset(
    "le la les des du et est une avec dans pour sur qui sont der das und ist ein eine mit auf für nicht den dem "
    "el los las y es con para una del por que il di che della sono gli een het zijn niet och är som".split()
)


def clean_text(raw: str, prompt: str | None = None, max_sentences: int = 3) -> str:
    """The description inside an LLM response: chat artefacts, preambles, prompt echo and markdown removed,
    whitespace collapsed, at most `max_sentences` sentences and no sentence cut off at the end."""
    text = _LEADING_TOKENS.sub("", raw)
    cut = _NEXT_TURN.search(text)
    if cut:
        text = text[: cut.start()]
    text = _strip_echo(text.strip(), prompt)
    lines = []
    for line in (raw_line for raw_line in text.splitlines() if raw_line.strip()):
        item = _LIST_MARKER.match(line) is not None
        line = _EMPHASIS.sub("", _LIST_MARKER.sub("", line)).strip()
        if any(c.isalnum() for c in line):  # a bare marker or rule ("*", "---") is no content
            lines.append((item, line))
    text = _join_lines(lines)
    previous = None
    while previous != text:  # preambles stack: "Sure! Here is a caption: Caption: ..."
        previous = text
        text = _ROLE_PREFIX.sub("", text)
        text = _PREAMBLE.sub("", text)
        text = _HERE_IS.sub("", text)
        text = _strip_echo(text, prompt)
        text = _strip_quotes(text.strip())
    text = re.sub(r"\s+", " ", text).strip()
    sentences = _split_sentences(text)
    if len(sentences) > 1 and not _COMPLETE.search(sentences[-1]):
        sentences = sentences[:-1]  # the last one was cut off by max_new_tokens
    text = " ".join(sentences[:max_sentences])
    if text[:1].islower() and not text[1:2].isupper():  # after a stripped preamble or echo; "iPhone" stays
        text = text[0].upper() + text[1:]
    return text


def _join_lines(lines: list[tuple[bool, str]]) -> str:
    """One paragraph: a run of one- or two-word list items ("socks", "a scarf") becomes a comma list, other items
    and lines sentences of their own, except a last plain line, which may be cut off mid-sentence and stays as is."""
    parts: list[str] = []
    run: list[str] = []
    for i, (item, line) in enumerate(lines):
        if item and len(line.split()) <= 2 and line[-1].isalnum():
            run.append(line)
            continue
        if run:
            parts.append(", ".join(run) + ".")
            run = []
        last_plain = i == len(lines) - 1 and not item
        parts.append(line if line[-1] in ".!?:;,\"'”’)" or last_plain else line + ".")
    if run:
        parts.append(", ".join(run) + ".")
    return " ".join(parts)


def _split_sentences(text: str) -> list[str]:
    """Sentences end at . ! or ? (and closing quotes) followed by a capital or a digit."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [sentence for sentence in sentences if sentence]


def _strip_echo(text: str, prompt: str | None) -> str:
    """`text` without a leading copy of the prompt (or of its last line), compared ignoring case and spacing."""
    if not prompt or not prompt.strip():
        return text
    for candidate in dict.fromkeys([prompt, prompt.strip().splitlines()[-1]]):
        words = re.findall(r"\w+", candidate)
        if not words:
            continue
        # Punctuation may differ in the echo ("inside)?" comes back as "inside),").
        pattern = r"^\W*" + r"\W+".join(re.escape(w) for w in words) + r"\b[^\w\s]*\s*"
        match = re.match(pattern, text, re.IGNORECASE)
        if match:
            return text[match.end() :].lstrip()
    return text


def _strip_quotes(text: str) -> str:
    """`text` without quotes around all of it ('"A boot."' and '"A boot".' alike)."""
    while len(text) >= 2 and text[0] in _QUOTE_PAIRS:
        close = _QUOTE_PAIRS[text[0]]
        inner, end = (text[1:-1], "") if text[-1] == close else (text[1:-2], text[-1])
        if text[-1] != close and not (text[-2] == close and end in ".!?"):
            break
        if text[0] in inner or close in inner:  # quotes inside: these two do not enclose the whole text
            break
        text = (inner.strip() + end).strip()
    return text


def is_refusal(text: str) -> bool:
    """Whether `text` declines to answer ("I'm sorry, but...", "As an AI...", "I cannot describe...")."""
    text = text.replace("’", "'")
    return bool(_REFUSAL_ANYWHERE.search(text) or _REFUSAL_START.search(text))


def is_non_english(text: str, min_ascii_ratio: float = 0.9) -> bool:
    """A cheap language check: non-English when under `min_ascii_ratio` of the letters are ASCII (other scripts,
    heavy diacritics), or when the text has at least two function words of French, German, Spanish, Italian,
    Dutch or Swedish and more of those than English function words. Descriptions are short, so a real language
    identifier would be no more reliable; a terse English caption with no function words at all passes."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if sum(c.isascii() for c in letters) / len(letters) < min_ascii_ratio:
        return True
    words = [w.lower() for w in _WORD.findall(text)]
    foreign = sum(w in _FOREIGN_STOPWORDS for w in words)
    english = sum(w in _ENGLISH_STOPWORDS for w in words)
    return foreign >= 2 and foreign > english


def normalize_for_dedup(text: str) -> str:
    """Lower-case words only: descriptions differing in case, punctuation or spacing are duplicates."""
    return " ".join(w.lower() for w in _WORD.findall(text))


def _embed(embedder: Any, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)  # cosine even if an embedder does not normalise


def clean_descriptions(
    records: Iterable[dict],
    classes: Sequence[ClassInfo],
    embedder: Any | None = None,
    min_words: int = 4,
    max_words: int = 120,
    min_similarity: float = 0.2,
    max_sentences: int = 3,
) -> tuple[list[dict], dict]:
    """(kept records with a cleaned `text`, stats): every dropped record is counted under one reason.

    Reasons, checked in this order: error, empty, refusal, non_english, too_short, too_long, off_topic (cosine
    similarity to the class's prompt name under `embedder` below `min_similarity`; skipped without an embedder),
    duplicate (the same normalised text already kept for the class). Texts are cut to `max_sentences` sentences
    first; one still longer than `max_words` is dropped, not truncated: cutting mid-sentence would leave a fragment,
    and such run-ons are mostly degenerate repetition loops. Stats: total, kept, dropped (per reason), per_class,
    per_prompt, drops (description_id and reason of each drop), examples (a few dropped raw texts per reason).
    """
    if min_words < 1 or max_words < min_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    by_id = {cls.class_id: cls for cls in classes}
    records = list(records)
    reasons: list[str | None] = []
    texts: list[str] = []
    for record in records:
        cls = by_id.get(record.get("class_id"))
        if cls is None:
            raise ValueError(
                f"description {record.get('description_id')!r} has class id {record.get('class_id')!r}, "
                "which is not among the classes given"
            )
        reason, text = _first_check(record, cls, min_words, max_words, max_sentences)
        reasons.append(reason)
        texts.append(text)
    if embedder is not None:
        _mark_off_topic(records, texts, reasons, by_id, embedder, min_similarity)
    seen: dict[str, set[str]] = {}
    kept: list[dict] = []
    for i, record in enumerate(records):
        if reasons[i] is None:
            normalized = normalize_for_dedup(texts[i])
            if normalized in seen.setdefault(record["class_id"], set()):
                reasons[i] = "duplicate"
            else:
                seen[record["class_id"]].add(normalized)
                kept.append({**record, "text": texts[i]})
    stats = _stats(records, reasons, classes)
    stats["settings"] = {
        "min_words": min_words,
        "max_words": max_words,
        "min_similarity": min_similarity,
        "max_sentences": max_sentences,
        "embedder": getattr(embedder, "name", None) if embedder else None,
    }
    return kept, stats


def _first_check(record: dict, cls: ClassInfo, min_words: int, max_words: int, max_sentences: int) -> tuple:
    """(drop reason or None, cleaned text) from the checks that look at one record alone."""
    raw = record.get("raw_text")
    if record.get("error") is not None or raw is None:
        return "error", ""
    prompt = record.get("prompt") or record.get("template", "").replace("{label}", cls.prompt_name)
    text = clean_text(raw, prompt, max_sentences)
    words = len(text.split())
    if not text:
        return "empty", text
    if is_refusal(text):
        return "refusal", text
    if is_non_english(text):
        return "non_english", text
    if words < min_words:
        return "too_short", text
    if words > max_words:
        return "too_long", text
    return None, text


def _mark_off_topic(
    records: list[dict], texts: list[str], reasons: list, by_id: dict, embedder: Any, min_similarity: float
) -> None:
    candidates = [i for i, reason in enumerate(reasons) if reason is None]
    if not candidates:
        return
    class_ids = sorted({records[i]["class_id"] for i in candidates})
    class_vectors = dict(zip(class_ids, _embed(embedder, [by_id[c].prompt_name for c in class_ids])))
    text_vectors = _embed(embedder, [texts[i] for i in candidates])
    for i, vector in zip(candidates, text_vectors):
        if float(vector @ class_vectors[records[i]["class_id"]]) < min_similarity:
            reasons[i] = "off_topic"


def _stats(records: list[dict], reasons: list[str | None], classes: Sequence[ClassInfo]) -> dict:
    zero = dict.fromkeys(DROP_REASONS, 0)
    per_class = {
        cls.class_id: {"label": cls.label, "name": cls.name, "total": 0, "kept": 0, "dropped": dict(zero)}
        for cls in classes
    }
    per_prompt: dict[str, dict] = {}
    dropped = dict(zero)
    drops, examples = [], {}
    for record, reason in zip(records, reasons):
        entry = per_class[record["class_id"]]
        prompt = per_prompt.setdefault(record.get("prompt_id"), {"total": 0, "kept": 0})
        entry["total"] += 1
        prompt["total"] += 1
        if reason is None:
            entry["kept"] += 1
            prompt["kept"] += 1
            continue
        entry["dropped"][reason] += 1
        dropped[reason] += 1
        drops.append({"description_id": record.get("description_id"), "reason": reason})
        if len(examples.setdefault(reason, [])) < 3:
            sample = record.get("raw_text") if reason != "error" else record.get("error")
            examples[reason].append({"description_id": record.get("description_id"), "text": (sample or "")[:200]})
    kept = sum(reason is None for reason in reasons)
    return {
        "total": len(records),
        "kept": kept,
        "dropped": dropped,
        "per_class": per_class,
        "per_prompt": per_prompt,
        "drops": drops,
        "examples": examples,
    }


def write_stats(stats: dict, path: str | os.PathLike) -> Path:
    """Write `stats` as indented JSON (atomically: a temp file renamed into place); returns the path."""
    return atomic_write_text(path, json.dumps(stats, indent=2, ensure_ascii=False, default=str) + "\n")


__all__ = [
    "DROP_REASONS",
    "GenerationCache",
    "clean_descriptions",
    "clean_text",
    "description_id",
    "generate_descriptions",
    "generation_key",
    "is_non_english",
    "is_refusal",
    "request_seed",
    "write_stats",
]
