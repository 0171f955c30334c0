"""What every description backend shares: the request and result types and the backend protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

PROMPTING_MODES = ("chat", "completion")


@dataclass(frozen=True)
class GenerationRequest:
    """One chat prompt to complete; `temperature=0` is greedy decoding and `seed=None` is not reproducible.

    With `prompt` set it is a plain-text completion instead (`messages` is then ignored): the model continues the
    text, and its output ends before the first of the `stop` strings.
    """

    key: str
    messages: list[dict[str, str]]
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_p: float = 0.95
    seed: int | None = None
    prompt: str | None = None
    stop: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    """The outcome of one request: `text` on success, else `error`; `attempts` counts tries.

    `latency_s` is the wall time from the first try to the result (for a local backend: its batch's time).
    """

    key: str
    text: str | None
    error: str | None = None
    attempts: int = 1
    latency_s: float = 0.0


@runtime_checkable
class DescriptionBackend(Protocol):
    """What the dataset builder needs from an LLM: a name and revision for provenance, and streaming generation.

    A backend may also have `model_id` (the Hub id recorded as provenance, else `name` is), `prompting` ("chat" or
    "completion", else chat) and `few_shot` (completion prompts open with examples of other categories).
    """

    name: str
    revision: str

    def generate(self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]) -> None:
        """Call `on_result` once per request as each completes; report per-request failures in `error`."""
        ...


def check_prompting(prompting: str, few_shot: bool) -> None:
    """Refuse an unknown prompting mode, and few-shot examples outside completion prompting."""
    if prompting not in PROMPTING_MODES:
        raise ValueError(f"LLM prompting {prompting!r} is unknown: expected one of {list(PROMPTING_MODES)}")
    if few_shot and prompting != "completion":
        raise ValueError("LLM few_shot: true needs prompting: completion (the examples are a completion prefix)")


class BackendUnavailableError(ConnectionError):
    """The backend cannot serve any request (e.g. the server never answered)."""
