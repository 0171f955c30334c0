"""Category descriptions from an LLM, generated resumably into a crash-safe cache.

`generate_descriptions` plans one request per (class, prompt, sample), sends the backend only the keys missing from
the `GenerationCache` (an fsync'd append-only JSONL file), and returns one record per planned key with its provenance
(prompt, its prompting mode and template hash, LLM, decoding, seed). Cleaning the texts is `clean.py`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from wvlp.common.errors import UserInputError
from wvlp.common.safe_io import ProcessLock
from wvlp.data.llm import NEUTRAL_SAMPLING, DescriptionBackend, GenerationRequest, GenerationResult
from wvlp.data.prompts import PromptTemplate, render, render_completion, render_user_prompt, template_hash
from wvlp.data.sources import ClassInfo

# Every sampling parameter a record states: the neutral defaults (NEUTRAL_SAMPLING) are sent and recorded too.
DECODING_DEFAULTS = {"max_new_tokens": 64, "temperature": 0.9, "top_p": 0.95, **NEUTRAL_SAMPLING}
# Settings that must match for a cached completion to stand for what this run would have generated.
_SETTINGS = ("template", "prompt", "llm", "llm_revision", "prompting", "template_hash", "decoding", "base_seed")
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


class FailedGenerationsError(UserInputError):
    """Generations failed (e.g. the LLM server went away); the ones that succeeded are in the cache for a rerun."""

    def __init__(self, message: str, failed: int):
        super().__init__(message)
        self.failed = failed


def check_failures(records: Sequence[dict], cache_path: str | os.PathLike, allowed: int = 0) -> int:
    """The number of records with an error; more than `allowed` raises `FailedGenerationsError` naming the count."""
    failed = [r for r in records if r.get("error") is not None]
    if len(failed) <= allowed:
        return len(failed)
    causes = Counter(r["error"] for r in failed).most_common(2)
    shown = "; ".join(f"{n} x {error[:300]!r}" for error, n in causes)
    raise FailedGenerationsError(
        f"{len(failed)} of {len(records)} generations failed ({shown}). The {len(records) - len(failed)} that "
        f"succeeded are kept in the generation cache {cache_path}: rerun once the LLM works again and only the "
        f"{len(failed)} failed ones are requested. llm.server_patience_s waits for a restarting server; "
        f"max_failed_generations (now {allowed}) lets a run finish without up to that many",
        len(failed),
    )


def resolve_decoding(decoding: dict | None) -> dict:
    """`decoding` checked and completed with every default, as it is sent and recorded."""
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
    top_k = merged["top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not (top_k == -1 or top_k >= 1):
        raise ValueError(
            f"decoding top_k must be -1 (no top-k cut) or a positive integer, got {top_k!r} "
            "(0 is refused because some servers reject it)"
        )
    if not 0 <= float(merged["min_p"]) < 1:
        raise ValueError(f"decoding min_p must be in [0, 1), got {merged['min_p']!r}")
    if not float(merged["repetition_penalty"]) > 0:
        raise ValueError(f"decoding repetition_penalty must be > 0 (1: none), got {merged['repetition_penalty']!r}")
    for name in ("frequency_penalty", "presence_penalty"):
        if not -2 <= float(merged[name]) <= 2:
            raise ValueError(f"decoding {name} must be in [-2, 2] (0: none), got {merged[name]!r}")
    return {
        "max_new_tokens": merged["max_new_tokens"],
        "temperature": float(merged["temperature"]),
        "top_p": float(merged["top_p"]),
        "top_k": top_k,
        "min_p": float(merged["min_p"]),
        "repetition_penalty": float(merged["repetition_penalty"]),
        "frequency_penalty": float(merged["frequency_penalty"]),
        "presence_penalty": float(merged["presence_penalty"]),
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
    set (and `raw_text` None) and is retried by the next run (`check_failures` turns such keys into an error).
    Each record states the whole decoding it was requested with and, as `llm_server`, what the backend's server
    reported about the model it serves (None for a local backend).
    """
    _check_inputs(classes, prompts, samples_per_prompt)
    decoding = resolve_decoding(decoding)
    # The backend says how it is prompted (it checked, at construction, that its model can be).
    prompting = getattr(backend, "prompting", "chat")
    few_shot = bool(getattr(backend, "few_shot", False))
    if prompting == "completion":
        headless = [template.id for template in prompts if template.completion is None]
        if headless:
            raise ValueError(f"prompting: completion needs a `completion` heading in prompt template(s) {headless}")
    hashes = {template.id: template_hash(template, prompting, with_gloss, few_shot) for template in prompts}
    planned: dict[str, dict] = {}
    for cls in classes:
        for template in prompts:
            if prompting == "completion":
                text = render_completion(template, cls, with_gloss, few_shot)
                request = {"_messages": [], "_prompt": text, "_stop": template.stop}
            else:
                text = render_user_prompt(template, cls, with_gloss)
                request = {"_messages": render(template, cls, with_gloss), "_prompt": None, "_stop": ()}
            # cleaning drops a reply that repeats the system prompt
            system = next((m["content"] for m in request["_messages"] if m["role"] == "system"), None)
            for index in range(samples_per_prompt):
                key = generation_key(cls.class_id, template.id, index)
                planned[key] = {
                    "key": key,
                    "description_id": description_id(key),
                    "class_id": cls.class_id,
                    "label": cls.label,
                    "class_name": cls.name,
                    "prompt_id": template.id,
                    "template": template.completion if prompting == "completion" else template.template,
                    "prompt": text,
                    "system_prompt": system,
                    "prompting": prompting,
                    "few_shot": few_shot,
                    "template_hash": hashes[template.id],
                    "stop": list(request["_stop"]),
                    "sample_index": index,
                    "llm": getattr(backend, "model_id", None) or backend.name,
                    "llm_revision": backend.revision,
                    "decoding": decoding,
                    "seed": request_seed(seed, key),
                    "base_seed": seed,
                    **request,
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
            # Known once the backend has started (its preflight asked the server), so read per result.
            record = _record({**plan, "llm_server": getattr(backend, "server_model", None)}, result)
            with lock:
                if record["error"] is None:
                    cache.add(record)
                    failed.pop(result.key, None)
                else:
                    cache.add_failure(record)
                    failed[result.key] = record
                bar.update(1)

        requests = [
            GenerationRequest(
                key,
                planned[key]["_messages"],
                seed=planned[key]["seed"],
                prompt=planned[key]["_prompt"],
                stop=planned[key]["_stop"],
                **decoding,
            )
            for key in missing
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
                result = GenerationResult(key, None, error="the backend returned no result", attempts=0)
                record = _record({**plan, "llm_server": getattr(backend, "server_model", None)}, result)
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


__all__ = [
    "DECODING_DEFAULTS",
    "FailedGenerationsError",
    "GenerationCache",
    "check_failures",
    "description_id",
    "generate_descriptions",
    "generation_key",
    "request_seed",
    "resolve_decoding",
]
