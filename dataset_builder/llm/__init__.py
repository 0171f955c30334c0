"""LLM backends that write category descriptions: a local transformers model and an OpenAI-compatible server.

Both implement `DescriptionBackend.generate(requests, on_result)`: `on_result` is called exactly once per request,
as soon as that request is finished, so the caller can append it to a crash-safe cache right away. A request that
fails is reported with `GenerationResult.error` (never raised); only a backend that cannot work at all raises:

- `LocalTransformersBackend` raises at construction when the model files are missing, and when it is asked to chat
  (`prompting: chat`, the default) with a model that has no chat template (a base model: use `prompting: completion`).
- `ServerBackend` raises `BackendUnavailableError` when its preflight `GET <base_url>/models` gets no HTTP answer
  (connection refused after the retries and `server_patience_s`, or no connection or no response within
  `connect_timeout_s`), and when a request has used up its retries on connection errors while no request of the
  same `generate` call has received any HTTP response (the server is unreachable, so every other request would fail
  the same way after the same retries). A server that goes away mid-run is waited for up to `server_patience_s`;
  after that every request left is reported failed (not sent), never raised.

This module holds `build_backend`; the request and result types and the backend protocol live in `base.py`, the
backends in `local.py` (transformers) and `server.py` (HTTP), the packaged GGUF and its cache folder in `gguf.py`.
"""

from __future__ import annotations

from wvlp.data.llm.base import (
    NEUTRAL_SAMPLING,
    PROMPTING_MODES,
    BackendUnavailableError,
    DescriptionBackend,
    GenerationRequest,
    GenerationResult,
)
from wvlp.data.llm.gguf import (
    PACKAGED_LLMS,
    default_cache_dir,
    default_gguf_path,
    materialize_gguf,
    packaged_gguf_path,
    packaged_llm_folder,
)
from wvlp.data.llm.local import LocalTransformersBackend
from wvlp.data.llm.server import ServerBackend

# prompting ("chat" | "completion") and few_shot are read by generate.py off the backend, which checks them.
_LOCAL_KEYS = {"model", "batch_size", "cache_dir", "revision", "device", "prompting", "few_shot"}
_SERVER_KEYS = {
    "base_url",
    "model",
    "concurrency",
    "read_timeout_s",
    "connect_timeout_s",
    "server_patience_s",
    "timeout_s",  # the former name of read_timeout_s: still accepted, with a FutureWarning
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "token_env",
    "revision",
    "prompting",
    "few_shot",
}


def build_backend(spec: dict) -> DescriptionBackend:
    """A backend from a config dict: `{"type": "local", ...}` or `{"type": "server", "base_url": ..., ...}`.

    Both take `prompting: chat | completion` and `few_shot`; a local `model` may name a packaged GGUF
    (`PACKAGED_LLMS`, e.g. "gemma3-270m").
    """
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind == "local":
        cls, allowed = LocalTransformersBackend, _LOCAL_KEYS
    elif kind == "server":
        cls, allowed = ServerBackend, _SERVER_KEYS
    else:
        raise ValueError(f"unknown LLM backend type {kind!r}: expected 'local' or 'server'")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for LLM backend type {kind!r}; allowed: {sorted(allowed)}")
    if kind == "server" and "base_url" not in spec:
        raise ValueError("LLM backend type 'server' needs 'base_url'")
    return cls(**spec)


__all__ = [
    "NEUTRAL_SAMPLING",
    "BackendUnavailableError",
    "DescriptionBackend",
    "GenerationRequest",
    "GenerationResult",
    "LocalTransformersBackend",
    "PACKAGED_LLMS",
    "PROMPTING_MODES",
    "ServerBackend",
    "build_backend",
    "default_cache_dir",
    "default_gguf_path",
    "materialize_gguf",
    "packaged_gguf_path",
    "packaged_llm_folder",
]
