"""What every description backend shares: the request and result types and the backend protocol."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# The sampling parameters beyond temperature and top_p, at the values that leave the distribution as it is. They are
# always sent, neutral ones too: a server left to its own defaults applies e.g. llama.cpp's top_k=40, min_p=0.05.
# top_k=-1 is the "no cut" value vLLM, SGLang and llama.cpp all accept (some vLLM/SGLang versions refuse 0).
NEUTRAL_SAMPLING: dict[str, float | int] = {
    "top_k": -1,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}
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
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    prompt: str | None = None
    stop: tuple[str, ...] = ()

    def non_neutral_sampling(self) -> dict[str, float | int]:
        """The sampling parameters beyond temperature and top_p that are set to change the distribution."""
        return {k: getattr(self, k) for k, neutral in NEUTRAL_SAMPLING.items() if getattr(self, k) != neutral}


@dataclass
class GenerationResult:
    """The outcome of one request: `text` on success (possibly "" for an empty reply), else `error`; `attempts`
    counts tries.

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

    A backend may also have `server_model`: what its server reported about the model it serves (a dict, or None),
    known once `generate` has started; the records carry it as `llm_server`. And `model_id` (the Hub id recorded as provenance, else `name` is), `prompting` ("chat" or
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
