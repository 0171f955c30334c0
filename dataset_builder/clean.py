"""Cleaning and filtering LLM descriptions, and the statistics of what was dropped and why.

`clean_text` cuts a raw response down to the description (chat artefacts, preambles, prompt echo and markdown
removed), after `completion_answer` has cut a completion at its end; `clean_descriptions` applies it to every
generated record and drops, under exactly one reason each, errors, empty texts, echoed prompts and turn markers,
refusals, non-English, lengths out of range, off-topic texts and duplicates; `write_stats` saves the counts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wvlp.common.safe_io import atomic_write_text
from wvlp.data.prompts import COMPLETION_SEPARATOR
from wvlp.data.sources import ClassInfo

# In the order the checks run: a record is counted under the first that drops it.
DROP_REASONS = (
    "error",
    "empty",
    "echo",
    "refusal",
    "non_english",
    "too_short",
    "too_long",
    "off_topic",
    "confusable",
    "duplicate",
)


_LEADING_TOKENS = re.compile(
    r"^\s*(?:(?:<\|[^|>]{1,40}\|>|<s>|<bos>|<start_of_turn>|\[INST\])\s*(?:assistant|model)?\s*)+", re.IGNORECASE
)
# After the answer, a special token or a role label at a line start opens the next turn: cut there.
_NEXT_TURN = re.compile(
    r"<\|[^|>]{1,40}\|>|</s>|<(?:start|end)_of_turn>|<eos>|\[/?INST\]|<</?SYS>>|"
    r"\n\s*(?:user|human|system|assistant|###\s*instruction)\s*:",
    re.IGNORECASE,
)
# A reply that opens a user or system turn or an instruction block is the model writing out the prompt: an echo.
_PROMPT_TURN = re.compile(
    r"^\s*(?:<bos>\s*)?(?:(?:<start_of_turn>|<\|im_start\|>|<\|start_header_id\|>)\s*(?:user|system|human)\b|"
    r"<\|(?:user|system|prompter)\|>|\[INST\]|<<SYS>>|#{2,}\s*(?:instruction|input|system|user)\b|"
    r"(?:user|human|system)\s*:)",
    re.IGNORECASE,
)
# Chat-template markers that survived cleaning: the text is template residue, not a description.
_LEFTOVER_MARKER = re.compile(
    r"<\|[^|>]{1,40}\|>|</?s>|<(?:start|end)_of_turn>|<bos>|<eos>|\[/?INST\]|<</?SYS>>|"
    r"#{2,}\s*(?:instruction|input|response|system|user)\b|\b(?:start|end)_of_turn\b|\bim_(?:start|end)\b",
    re.IGNORECASE,
)
_ECHO_MIN_WORDS = 4  # a shorter common phrase ("the ankle boot") is no evidence of an echo
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


def completion_answer(raw: str, stop: Sequence[str] = ()) -> str:
    """The answer of a completion-prompted model: `raw` up to its first stop string or blank line.

    The backends already stop there; a server that ignores `stop`, or a cache written with other stops, leaves the
    model's run past its answer into a next few-shot block (which starts after a blank line).
    """
    ends = [at for at in (raw.find(s) for s in (*stop, COMPLETION_SEPARATOR) if s) if at >= 0]
    return raw[: min(ends)] if ends else raw


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


def _words(text: str) -> str:
    return " " + normalize_for_dedup(text) + " "


def is_echo(raw: str, text: str, prompt: str | None = None, system: str | None = None) -> bool:
    """Whether a reply repeats its prompt instead of answering: it opens a user/system turn or an instruction block,
    its cleaned `text` still holds chat-template markers, repeats a sentence of the `system` prompt (or is a piece of
    it), or holds the user `prompt`'s question (a leading copy is stripped by `clean_text`, not counted here); an
    empty `text` is an echo when the `raw` reply was the question alone."""
    if _PROMPT_TURN.match(raw) or _LEFTOVER_MARKER.search(text):
        return True
    cleaned = _words(text)
    if system and system.strip():
        sentences = [s for s in _split_sentences(re.sub(r"\s+", " ", system)) if len(_WORD.findall(s)) >= 5]
        if any(_words(sentence) in cleaned for sentence in sentences):
            return True
        if len(_WORD.findall(text)) >= _ECHO_MIN_WORDS and cleaned in _words(system):
            return True
    if prompt and prompt.strip():
        question = _words(prompt.strip().splitlines()[-1])
        if len(question.split()) >= _ECHO_MIN_WORDS and question in (cleaned if text else _words(raw)):
            return True
    return False


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
    drop_confusable: bool = False,
) -> tuple[list[dict], dict]:
    """(kept records with a cleaned `text`, stats): every dropped record is counted under one reason.

    Reasons, checked in this order (`DROP_REASONS`): error, empty, echo (`is_echo`: the reply repeats the system or
    user prompt, or is chat-template residue), refusal, non_english, too_short, too_long, off_topic (cosine
    similarity to the class's prompt name under `embedder` below `min_similarity`; skipped without an embedder),
    confusable (with `drop_confusable`: nearer another class's prompt name than its own, so it would teach that class),
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
        _mark_by_similarity(records, texts, reasons, by_id, embedder, min_similarity, drop_confusable)
    elif drop_confusable:
        raise ValueError("cleaning.drop_confusable needs the sentence embedder (embedder=None was given)")
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
        "drop_confusable": drop_confusable,
        "embedder": getattr(embedder, "name", None) if embedder else None,
    }
    return kept, stats


def _first_check(record: dict, cls: ClassInfo, min_words: int, max_words: int, max_sentences: int) -> tuple:
    """(drop reason or None, cleaned text) from the checks that look at one record alone."""
    raw = record.get("raw_text")
    if record.get("error") is not None or raw is None:
        return "error", ""
    prompt = record.get("prompt") or record.get("template", "").replace("{label}", cls.prompt_name)
    if record.get("prompting") == "completion":
        raw = completion_answer(raw, record.get("stop") or ())
    text = clean_text(raw, prompt, max_sentences)
    words = len(text.split())
    system = record.get("system_prompt")
    if not text:
        return ("echo" if is_echo(raw, text, prompt, system) else "empty"), text
    if is_echo(raw, text, prompt, system):
        return "echo", text
    if is_refusal(text):
        return "refusal", text
    if is_non_english(text):
        return "non_english", text
    if words < min_words:
        return "too_short", text
    if words > max_words:
        return "too_long", text
    return None, text


def _mark_by_similarity(
    records: list[dict],
    texts: list[str],
    reasons: list,
    by_id: dict,
    embedder: Any,
    min_similarity: float,
    drop_confusable: bool,
) -> None:
    """Marks off_topic (and, with `drop_confusable`, confusable) among the records no earlier check dropped."""
    candidates = [i for i, reason in enumerate(reasons) if reason is None]
    if not candidates:
        return
    class_ids = sorted(by_id)
    class_vectors = _embed(embedder, [by_id[c].prompt_name for c in class_ids])
    column = {c: j for j, c in enumerate(class_ids)}
    similarities = _embed(embedder, [texts[i] for i in candidates]) @ class_vectors.T
    for i, row in zip(candidates, similarities):
        own = column[records[i]["class_id"]]
        if float(row[own]) < min_similarity:
            reasons[i] = "off_topic"
        elif drop_confusable and int(row.argmax()) != own and float(row.max()) > float(row[own]):
            reasons[i] = "confusable"


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
    "clean_descriptions",
    "clean_text",
    "is_echo",
    "completion_answer",
    "is_non_english",
    "is_refusal",
    "normalize_for_dedup",
    "write_stats",
]
