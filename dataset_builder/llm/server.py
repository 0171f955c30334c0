"""`ServerBackend`: an async HTTP client for an OpenAI-compatible chat-completions server, with bounded retries.

It talks `httpx` directly to `<base_url>/models` (a preflight) and to the chat-completions endpoint, through its own
connection pool that only ever reaches `base_url`'s origin, and turns every failed attempt into a retry decision and
a token-free message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wvlp.data.llm.base import BackendUnavailableError, GenerationRequest, GenerationResult, check_prompting

TOKEN_ENV = "WVLP_LLM_TOKEN"
FALLBACK_TOKEN_ENV = "HF_TOKEN"
# The model name sent when none is configured (what huggingface_hub's client sent): servers of one model ignore it.
_NO_MODEL = "dummy"


class _ForeignOriginError(Exception):
    """A request to somewhere other than the configured server (never sent)."""


class _AttemptError(Exception):
    """One failed attempt: whether to retry, whether it was transport-level, and a token-free message.

    `unavailable`: the server itself is gone or not ready (no connection, or HTTP 503 as llama.cpp answers while it
    loads a model), so the request waits for the server rather than using its retries.
    """

    def __init__(
        self,
        message: str,
        retryable: bool,
        transport: bool = False,
        retry_after: float | None = None,
        unavailable: bool | None = None,
    ):
        super().__init__(message)
        self.retryable, self.transport, self.retry_after = retryable, transport, retry_after
        self.unavailable = transport if unavailable is None else unavailable


_HUB_HOSTS = ("huggingface.co", "hf.co")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_hub_host(host: str) -> bool:
    """Whether `host` is the Hugging Face Hub (or one of its subdomains, e.g. the inference router)."""
    from huggingface_hub import constants

    hosts = {*_HUB_HOSTS, urlsplit(constants.ENDPOINT).hostname or ""}
    return any(host == h or host.endswith("." + h) for h in hosts if h)


def _chat_completions_url(base_url: str) -> str:
    """The chat-completions endpoint of `base_url`: `.../v1` gets `/chat/completions`, any other path `/v1/...`."""
    # The rule of huggingface_hub's InferenceClient, which this backend used before: configs written for it still work.
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return urlunsplit(parts._replace(path=path))


def _completions_url(base_url: str) -> str:
    """The plain-text completions endpoint of `base_url`, by the same rule as `_chat_completions_url`."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/").removesuffix("/chat/completions")
    if not path.endswith("/completions"):
        path += "/completions" if path.endswith("/v1") else "/v1/completions"
    return urlunsplit(parts._replace(path=path))


def _error_detail(response: Any) -> str:
    """What an error response says: the OpenAI-style `error.message` when there is one, else the body as text."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):  # not JSON, or not a JSON object
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if error:
        return str(error)
    return response.text.strip() or response.reason_phrase


# Fields of a /v1/models entry that say nothing about the weights (and `permission` is a long list in vLLM).
_MODEL_NOISE = ("object", "created", "permission")
_MODEL_INFO_MAX_CHARS = 4000


def _served_model(payload: Any, model: str | None) -> dict[str, Any] | None:
    """The `/v1/models` entry of `model` (or the only entry, for a one-model server), without its noise fields."""
    data = payload.get("data") if isinstance(payload, dict) else None
    entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
    entry = next((e for e in entries if model is not None and e.get("id") == model), None)
    if entry is None and len(entries) == 1:  # llama.cpp serves its one model under any name
        entry = entries[0]
    if entry is None:
        return None
    info = {k: v for k, v in entry.items() if k not in _MODEL_NOISE}
    if len(json.dumps(info, default=str)) > _MODEL_INFO_MAX_CHARS:  # keep every record small
        info = {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return info


@dataclass
class _CallState:
    """What the requests of one `agenerate` call share."""

    semaphore: asyncio.Semaphore
    any_response: bool = False  # some HTTP response arrived, so the server is reachable
    probe: asyncio.Future | None = None  # the one wait for the server that every failing request joins
    down: str | None = None  # why the server counts as gone for the rest of the call (patience used up)


class ServerBackend:
    """An OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp, Inference Endpoints...).

    Each `generate` call first sends a preflight `GET <base_url>/models` that must be connected within
    `connect_timeout_s` and answered (any HTTP status will do, a 404 too) within `connect_timeout_s` more: a server
    that is down or accepts connections without answering is reported as `BackendUnavailableError` in seconds, rather
    than after every request's full timeouts and retries. What the answer says about the served model (its `id` and
    any `owned_by`, `root`, `meta`... fields) becomes `server_model`, for the records' provenance. Connection errors
    (e.g. refused) are retried with the backoff below, or for up to `server_patience_s` when that is longer; a
    preflight timeout is not retried.

    The requests then go to `<base_url>/chat/completions` (a `base_url` not ending in `/v1` gets
    `/v1/chat/completions`) with at most `concurrency` HTTP requests in flight. Connecting is bounded by
    `connect_timeout_s`, and waiting for the answer by `read_timeout_s`, which includes the time the request waits in
    the server's own queue. Every sampling parameter of the request is sent, neutral ones too. Up to `max_retries`
    retries with exponential backoff and full jitter (honouring a numeric `Retry-After`) follow connection errors,
    timeouts, HTTP 408/429/5xx and malformed responses; any other 4xx is reported at once. A reply whose content is
    null is a result (an empty text), not a fault.

    When requests fail with connection errors or HTTP 503 (llama.cpp's answer while it loads a model), they wait
    for the server: `GET <base_url>/models` is polled until it answers with anything but a 503, for up to
    `server_patience_s` from the first failure (the preflight waits the same way); attempts that failed while the
    server was down do not count against `max_retries`. A server still down after that (or, with no patience, after a request used up
    its retries) counts as gone: the requests left are reported failed without being sent, so a run ends in seconds
    rather than after every request's retries, and a rerun asks for exactly those.

    The bearer token comes from `$WVLP_LLM_TOKEN` (else `$HF_TOKEN`; `token_env` renames the first) and never appears
    in reprs, logs or error strings. Without a token no Authorization header is sent (in particular not the token of
    `hf auth login`). `timeout_s`, the former name of `read_timeout_s`, still works with a FutureWarning.

    The client talks only to `base_url`'s origin through its own `httpx` connection pool, so `HF_HUB_OFFLINE=1`
    (which makes huggingface_hub's shared session refuse every URL, loopback included) does not block it; under
    offline mode a `base_url` on the Hugging Face Hub itself is refused.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        concurrency: int = 64,
        read_timeout_s: float | None = None,
        connect_timeout_s: float = 10.0,
        server_patience_s: float = 0.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        token_env: str = TOKEN_ENV,
        revision: str | None = None,
        timeout_s: float | None = None,
        prompting: str = "chat",
        few_shot: bool = False,
    ):
        from huggingface_hub import constants

        check_prompting(prompting, few_shot)

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if constants.is_offline_mode() and _is_hub_host(parts.hostname):
            raise ValueError(
                f"HF_HUB_OFFLINE=1 is set but base_url {base_url!r} is on the Hugging Face Hub: "
                "unset HF_HUB_OFFLINE to use the Hub's inference router"
            )
        if timeout_s is not None:
            if read_timeout_s is not None:
                raise ValueError(
                    f"llm.timeout_s={timeout_s} and llm.read_timeout_s={read_timeout_s} are both set: timeout_s is "
                    "the former name of read_timeout_s, keep only read_timeout_s"
                )
            warnings.warn(
                f"llm.timeout_s={timeout_s} is now called read_timeout_s (the wait for an answer, queueing in the "
                "server included; connecting is bounded by connect_timeout_s): rename it",
                FutureWarning,
                stacklevel=2,
            )
            read_timeout_s = timeout_s
        read_timeout_s = 120.0 if read_timeout_s is None else read_timeout_s
        if concurrency < 1 or max_retries < 0 or read_timeout_s <= 0 or connect_timeout_s <= 0:
            raise ValueError(
                "need concurrency >= 1, max_retries >= 0, read_timeout_s > 0, connect_timeout_s > 0; got "
                f"{concurrency}, {max_retries}, {read_timeout_s}, {connect_timeout_s}"
            )
        if server_patience_s < 0:
            raise ValueError(
                f"need server_patience_s >= 0 (0: no waiting for a server that is down), got {server_patience_s}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model or "server-default"
        self.revision = revision or self.name
        self.server_model: dict[str, Any] | None = None
        self.model_id = self.name
        # Completion requests (those with a `prompt`) go to /completions; the server must serve a base model there.
        self.prompting, self.few_shot = prompting, bool(few_shot)
        self.concurrency = concurrency
        self.read_timeout_s = float(read_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.server_patience_s = float(server_patience_s)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._origin = (parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
        self._chat_url = _chat_completions_url(self.base_url)
        self._models_url = f"{self.base_url}/models"
        self._completions_url = _completions_url(self.base_url)
        self._token = os.environ.get(token_env) or os.environ.get(FALLBACK_TOKEN_ENV) or None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency}, "
            f"read_timeout_s={self.read_timeout_s}, connect_timeout_s={self.connect_timeout_s}, "
            f"server_patience_s={self.server_patience_s}, max_retries={self.max_retries}, "
            f"token={'set' if self._token else 'unset'})"
        )

    @property
    def attempt_limit_s(self) -> float:
        """The most one chat attempt may take: connecting, sending, then waiting for the answer."""
        return 2 * self.connect_timeout_s + self.read_timeout_s

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
        import httpx

        state = _CallState(asyncio.Semaphore(self.concurrency))
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        hooks = {"request": [self._check_request]}
        # Separate phases: a long queue inside the server delays only the first byte of the answer (read), while a
        # server that is gone fails the connect in seconds. Sending a small body is bounded like connecting; the
        # semaphore, not the pool, bounds the requests in flight.
        timeout = httpx.Timeout(
            connect=self.connect_timeout_s, read=self.read_timeout_s, write=self.connect_timeout_s, pool=None
        )
        async with httpx.AsyncClient(limits=limits, timeout=timeout, event_hooks=hooks) as http:
            await self._preflight(http)
            try:
                await self._run_all(http, state, requests, on_result)
            finally:
                if state.probe is not None and not state.probe.done():
                    state.probe.cancel()
                    await asyncio.gather(state.probe, return_exceptions=True)

    async def _preflight(self, http: Any) -> None:
        """GET `<base_url>/models` until any HTTP answer; raises `BackendUnavailableError` when none can come."""
        import httpx

        url = self._models_url
        # Every phase (connect, send, first byte of the answer) gets the short timeout: /models answers at once on a
        # live server even while it is busy generating, unlike a chat completion.
        timeout = httpx.Timeout(self.connect_timeout_s)
        deadline = time.monotonic() + self.server_patience_s
        waited = f" (waited {self.server_patience_s:g}s: llm.server_patience_s)" if self.server_patience_s else ""
        attempts = 0
        while True:
            attempts += 1
            try:
                response = await http.get(url, timeout=timeout)
            except httpx.ConnectTimeout:
                problem = f"is unreachable: no connection within {self.connect_timeout_s:g}s (GET {url})"
                retryable = False
            except httpx.TimeoutException:
                # Retrying would only wait as long again: a server that accepts and stays silent is hung.
                raise BackendUnavailableError(
                    f"{self.base_url} is not answering: it accepted the connection but sent no response to GET {url} "
                    f"within {self.connect_timeout_s:g}s"
                ) from None
            except (httpx.TransportError, ConnectionError) as err:
                message = self._redact(f"{type(err).__name__}: {err}")
                problem = f"is unreachable after {attempts} attempts: {message} (GET {url})"
                retryable = attempts <= self.max_retries
            else:
                if response.status_code == 503 and time.monotonic() < deadline:
                    # Still loading its model (llama.cpp): within the patience, wait for it to be ready.
                    await asyncio.sleep(min(self._poll_s, max(0.0, deadline - time.monotonic())))
                    continue
                try:
                    payload = response.json() if response.status_code < 400 else None
                except ValueError:  # not JSON: the server is there, it just does not describe its model
                    payload = None
                self.server_model = _served_model(payload, self.model)
                return
            if time.monotonic() < deadline:
                await asyncio.sleep(min(self._poll_s, max(0.0, deadline - time.monotonic())))
            elif retryable:
                await asyncio.sleep(self._backoff_s(attempts))
            else:
                raise BackendUnavailableError(f"{self.base_url} {problem}{waited}")

    @property
    def _poll_s(self) -> float:
        """How often a server that is down is asked again whether it is back."""
        return min(self.backoff_max_s, max(0.05, 2 * self.backoff_base_s))

    async def _answers(self, http: Any) -> bool:
        """Whether GET `<base_url>/models` gets an HTTP answer other than 503 within the connect timeout."""
        import httpx

        try:
            async with http.stream("GET", self._models_url, timeout=httpx.Timeout(self.connect_timeout_s)) as response:
                return response.status_code != 503  # llama.cpp answers 503 to everything while it loads
        except Exception:  # refused, reset, silent: not back
            return False

    async def _wait_for_server(self, state: _CallState, http: Any) -> bool | None:
        """None: the server answers (it was never down); True: it was down and is back; False: down for good."""
        deadline = time.monotonic() + self.server_patience_s
        was_down = False
        while True:
            if await self._answers(http):
                return True if was_down else None
            if time.monotonic() >= deadline:
                state.down = (
                    f"{self.base_url} stopped answering (GET {self._models_url}) and was still down after "
                    f"{self.server_patience_s:g}s (llm.server_patience_s)"
                )
                return False
            was_down = True
            await asyncio.sleep(min(self._poll_s, max(0.0, deadline - time.monotonic())))

    async def _server_back(self, state: _CallState, http: Any) -> bool | None:
        """`_wait_for_server`, shared: every request that fails while one wait is going on joins that wait."""
        if state.down is not None:
            return False
        if state.probe is None or state.probe.done():
            state.probe = asyncio.ensure_future(self._wait_for_server(state, http))
        # Shielded: one request being cancelled must not cancel the wait of all the others.
        return await asyncio.shield(state.probe)

    def _backoff_s(self, attempts: int, retry_after: float | None = None) -> float:
        """The wait before retry number `attempts`: full jitter, with a server's `Retry-After` as a floor."""
        delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))
        return delay if retry_after is None else max(delay, min(retry_after, self.backoff_max_s))

    async def _run_all(
        self,
        http: Any,
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
                    task = asyncio.create_task(self._run_one(http, state, request))
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

    async def _run_one(self, http: Any, state: _CallState, request: GenerationRequest) -> GenerationResult:
        """One request with retries; returns its result, raises only `BackendUnavailableError`."""
        started = time.perf_counter()
        attempts = counted = 0  # counted: the attempts that use the retry budget (not those during an outage)
        gone = ""
        last: _AttemptError | None = None
        while True:
            if state.down is not None:  # the server went for good while this request waited or was not yet sent
                error = (
                    f"not sent: {state.down}" if last is None else f"{last} (after {attempts} attempts); {state.down}"
                )
                return GenerationResult(
                    request.key, None, error=error, attempts=attempts, latency_s=time.perf_counter() - started
                )
            attempts += 1
            try:
                async with state.semaphore:
                    text = await self._attempt(http, state, request)
                return GenerationResult(request.key, text, attempts=attempts, latency_s=time.perf_counter() - started)
            except _AttemptError as err:
                last = err
            counted += 1
            if last.unavailable and last.retryable and (self.server_patience_s > 0 or counted > self.max_retries):
                back = await self._server_back(state, http)
                if back is False:
                    gone = f"; {state.down}"
                    break
                if back:  # it failed because the server was down: not this request's fault
                    counted -= 1
                    continue
            if not last.retryable or counted > self.max_retries:
                break
            await asyncio.sleep(self._backoff_s(counted, last.retry_after))
        if last.transport and last.retryable and not state.any_response:
            raise BackendUnavailableError(f"{self.base_url} is unreachable after {attempts} attempts: {last}{gone}")
        error = f"{last} (after {attempts} attempt{'s' if attempts > 1 else ''}){gone}"
        latency = time.perf_counter() - started
        return GenerationResult(request.key, None, error=error, attempts=attempts, latency_s=latency)

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """(URL, body): every sampling parameter explicit, so no server default applies unseen."""
        url, body = self._request_body(request)
        body = {
            **body,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "top_k": request.top_k,
            "min_p": request.min_p,
            "repetition_penalty": request.repetition_penalty,
            # llama.cpp's name for repetition_penalty (it ignores the other); vLLM and TGI ignore this one.
            "repeat_penalty": request.repetition_penalty,
            "frequency_penalty": request.frequency_penalty,
            "presence_penalty": request.presence_penalty,
            "stream": False,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return url, body

    async def _attempt(self, http: Any, state: _CallState, request: GenerationRequest) -> str:
        """One HTTP attempt; every failure becomes an `_AttemptError` with a token-free message."""
        import httpx

        url, body = self._body(request)
        # Only the chat requests carry the token: the preflight proves the server is there without it.
        headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            call = http.post(url, json=body, headers=headers)
            # httpx's read timeout restarts with every chunk: this bounds a server that trickles its answer.
            if hasattr(asyncio, "timeout"):  # Python >= 3.11: no extra task per attempt, unlike wait_for
                async with asyncio.timeout(self.attempt_limit_s):
                    response = await call
            else:
                response = await asyncio.wait_for(call, timeout=self.attempt_limit_s)
        except (asyncio.TimeoutError, TimeoutError, httpx.TimeoutException) as err:
            if isinstance(err, httpx.ConnectTimeout):
                message = f"no connection within {self.connect_timeout_s:g}s (connect_timeout_s)"
            elif isinstance(err, httpx.ReadTimeout):
                message = f"no answer within {self.read_timeout_s:g}s (read_timeout_s)"
            elif isinstance(err, httpx.WriteTimeout):
                message = f"could not send the request within {self.connect_timeout_s:g}s (connect_timeout_s)"
            else:
                message = f"timed out after {self.attempt_limit_s:g}s in all"
            # A connect timeout is the server being gone; a read timeout is a slow server, retried in place.
            raise _AttemptError(message, True, transport=not isinstance(err, httpx.ReadTimeout)) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, _ForeignOriginError) as err:
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), False) from None
        except (httpx.TransportError, ConnectionError) as err:
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), True, transport=True) from None
        except Exception as err:  # anything else fails this request only, without a retry
            raise _AttemptError(self._redact(f"{type(err).__name__}: {err}"), False) from None
        state.any_response = True
        status = response.status_code
        if status >= 400:
            retryable = status in (408, 429) or status >= 500
            header = response.headers.get("retry-after", "")
            retry_after = float(header) if header.strip().isdigit() else None
            message = f"HTTP {status}: {response.reason_phrase} from POST {url}: {_error_detail(response)}"
            raise _AttemptError(self._redact(message), retryable, retry_after=retry_after, unavailable=status == 503)
        try:
            output = response.json()
        except ValueError as err:  # the body was not JSON (json.JSONDecodeError, UnicodeDecodeError)
            raise _AttemptError(self._redact(f"malformed response: {err}"), True) from None
        choices = output.get("choices") if isinstance(output, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        if request.prompt is not None:
            text = first.get("text") if isinstance(first, dict) else None
            if not isinstance(text, str):
                raise _AttemptError("malformed response: no choices[0].text", True)
            return text.strip()
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise _AttemptError("malformed response: no choices[0].message", True)
        content = message.get("content")
        if content is None:
            # The model answered with nothing (e.g. it stopped at once): a result, which cleaning counts as empty.
            # Retrying would ask again for the same seeded sample.
            return ""
        if not isinstance(content, str):
            raise _AttemptError(f"malformed response: choices[0].message.content is a {type(content).__name__}", True)
        return content.strip()

    def _request_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """(URL, body without the sampling parameters): a chat completion, or a text completion with its stops."""
        if request.prompt is None:
            return self._chat_url, {"model": self.model or _NO_MODEL, "messages": request.messages}
        body: dict[str, Any] = {"model": self.model or _NO_MODEL, "prompt": request.prompt}
        if request.stop:
            body["stop"] = list(request.stop)
        return self._completions_url, body

    def _redact(self, text: str) -> str:
        """`text` without the token (a server may echo request headers back in its error body)."""
        text = text if len(text) <= 500 else text[:500] + "..."
        return text.replace(self._token, "***") if self._token else text


__all__ = ["ServerBackend"]
