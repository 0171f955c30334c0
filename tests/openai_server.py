"""A loopback OpenAI-compatible chat-completions (and text-completions) server with fault injection, for tests.

    with OpenAIStubServer(latency_s=0.05, fault_rates={"500": 0.2}) as server:
        client(base_url=server.base_url)   # http://127.0.0.1:<port>/v1
        server.requests, server.max_in_flight

The answer is the last user message echoed back (`"echo: <message>"`), so it is deterministic from the request; at
`/v1/completions` it is `" echo: <prompt>"`, cut before the first of the request's `stop` strings, like a server
(the "message" that selects scripts below is then the whole prompt). `reply=` replaces it (a function of the last
user message or prompt and the request body; returning None answers a chat request with `"content": null`), e.g.
`describing_reply`, which names what the prompt asks about without echoing it (cleaning drops echoes).
`GET /v1/models` lists `model` with `owned_by` and `meta` (`get_requests` records those calls).

An outage: `down_after=n` answers n chat requests, then goes down as the next one arrives (that one and every
later request on an open connection is closed unanswered, new connections are refused) and comes back on the same
port after `down_for_s` (never, when None: call `come_back()`). `go_down()` starts one by hand. With
`outage="503"` the server stays up but answers everything with HTTP 503 "Loading model", as llama.cpp does while
it loads a model.

Each request gets an outcome, decided in this order:

1. `scripts_by_prompt[message]`: the outcomes of the successive attempts of that message, then "ok";
2. `script`: outcomes consumed in arrival order, then "ok";
3. `fault_rates`: a draw from a generator seeded by (seed, message, attempt number), so the same prompt meets the
   same faults at the same attempt whatever the interleaving of concurrent requests;
4. "ok".

Outcomes: "ok"; "null" (a 200 whose message content is null); an HTTP status such as "500", "503", "429" (sent
with `Retry-After: 0`) or "400" (its error body echoes the Authorization header, like a careless server, to test that
clients redact it); "malformed" (a 200 with a truncated JSON body); "hang" (no answer until `hang_s` or shutdown, then
the connection is closed); "drop" (the connection is closed without an answer). Requests met by an outage are
recorded with the outcome "down".
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
COMPLETIONS_PATH = "/v1/completions"


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    body: Any
    headers: dict[str, str]
    outcome: str
    prompt: str | None
    received_at: float


def last_user_message(body: Any) -> str | None:
    """The content of the last user message of a chat-completions body, if any."""
    try:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
    except (TypeError, KeyError, AttributeError):
        return None
    return users[-1] if users and isinstance(users[-1], str) else None


def describing_reply(prompt: str | None, body: Any = None) -> str:
    """A reply that names what `prompt` asks about without repeating it (its last line's words, reversed), and
    differs per sampling seed (spelled in letters: cleaning's duplicate check ignores digits)."""
    words = re.findall(r"[^\W\d_]+", prompt.strip().splitlines()[-1] if prompt and prompt.strip() else "")
    seed = body.get("seed") if isinstance(body, dict) else None
    variant = ""
    if isinstance(seed, int):
        variant, seed = " variant ", seed + 1
        while seed:
            seed, digit = divmod(seed, 26)
            variant += "abcdefghijklmnopqrstuvwxyz"[digit]
    return "Seen in a photo: " + " ".join(reversed(words)) + variant + "."


def completion_prompt(body: Any) -> str | None:
    """The prompt of a text-completions body, if it is a string."""
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # hanging handlers wake on the stop event; never join them at close
    request_queue_size = 1024  # the default backlog of 5 drops connections when 64 clients connect at once
    stub: OpenAIStubServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK would add 40 ms

    def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr log
        pass

    def do_POST(self) -> None:
        self.server.stub._handle(self)

    def do_GET(self) -> None:
        self.server.stub._handle_get(self)


class OpenAIStubServer:
    """A real `ThreadingHTTPServer` on 127.0.0.1 in a daemon thread; a context manager that always shuts down."""

    def __init__(
        self,
        *,
        latency_s: float | tuple[float, float] = 0.0,
        fault_rates: Mapping[str, float] | None = None,
        script: Sequence[str] = (),
        scripts_by_prompt: Mapping[str, Sequence[str]] | None = None,
        hang_s: float = 10.0,
        seed: int = 0,
        model: str = "stub-model",
        owned_by: str = "stub",
        meta: Mapping[str, Any] | None = None,
        reply: Callable[[str | None, Any], str | None] | None = None,
        down_after: int | None = None,
        down_for_s: float | None = None,
        outage: str = "refuse",
    ):
        self.latency_s = latency_s
        self.fault_rates = dict(fault_rates or {})
        if sum(self.fault_rates.values()) > 1:
            raise ValueError(f"fault rates sum above 1: {self.fault_rates}")
        self.script = list(script)
        self.scripts_by_prompt = {k: list(v) for k, v in (scripts_by_prompt or {}).items()}
        self.hang_s = hang_s
        self.seed = seed
        self.model = model
        self.owned_by = owned_by
        self.meta = dict(meta) if meta is not None else None
        self.reply = reply
        self.down_after = down_after
        self.down_for_s = down_for_s
        if outage not in ("refuse", "503"):
            raise ValueError(f"outage must be 'refuse' or '503', got {outage!r}")
        self.outage = outage
        self.outages = 0  # how many times the server went down
        self._down = False
        self._port: int | None = None
        self._timer: threading.Timer | None = None
        self._get_requests: list[RecordedRequest] = []
        self._chat_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._attempts: dict[str | None, int] = defaultdict(int)
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:43211/v1."""
        if self._port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far."""
        with self._lock:
            return list(self._requests)

    @property
    def get_requests(self) -> list[RecordedRequest]:
        """A snapshot of every GET (e.g. the clients' `/v1/models` preflights and probes) received so far."""
        with self._lock:
            return list(self._get_requests)

    @property
    def is_down(self) -> bool:
        """Whether the server is in an outage."""
        return self._down

    def requests_for(self, prompt: str) -> list[RecordedRequest]:
        """The recorded requests whose last user message is `prompt`."""
        return [r for r in self.requests if r.prompt == prompt]

    def start(self) -> OpenAIStubServer:
        """Bind an ephemeral loopback port and serve in a daemon thread."""
        self._listen(0)
        return self

    def _listen(self, port: int) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stub = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _unlisten(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def go_down(self, for_s: float | None = None) -> None:
        """Start an outage: refuse new connections and close requests unanswered; back after `for_s`, if given."""
        with self._lock:
            if self._down:
                return
            self._down = True
            self.outages += 1
        self._shut(for_s)

    def _shut(self, for_s: float | None) -> None:
        if self.outage == "refuse":
            self._unlisten()
        if for_s is not None:
            self._timer = threading.Timer(for_s, self.come_back)
            self._timer.daemon = True
            self._timer.start()

    def come_back(self) -> None:
        """End an outage: listen again on the same port."""
        with self._lock:
            if not self._down or self._stop.is_set():
                return
        if self.outage == "refuse":
            self._listen(self._port)
        self._down = False

    def close(self) -> None:
        """Stop serving, wake hanging handlers and close the socket (within about a second)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        self._unlisten()

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _outcome(self, prompt: str | None) -> str:
        with self._lock:
            attempt = self._attempts[prompt]
            self._attempts[prompt] += 1
            scripted = self.scripts_by_prompt.get(prompt) if prompt is not None else None
            if scripted is not None:
                return scripted[attempt] if attempt < len(scripted) else "ok"
            if self.script:
                return self.script.pop(0)
        draw = random.Random(f"{self.seed}:{prompt}:{attempt}").random()
        for outcome, rate in self.fault_rates.items():
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def _latency(self) -> float:
        if isinstance(self.latency_s, tuple):
            return random.uniform(*self.latency_s)
        return self.latency_s

    def _handle_get(self, handler: _Handler) -> None:
        with self._lock:
            down = self._down
            self._get_requests.append(
                RecordedRequest(
                    handler.path, None, dict(handler.headers.items()), "down" if down else "ok", None, time.time()
                )
            )
        if down and self.outage == "503":
            self._send_json(handler, 503, _LOADING)
        elif down:
            handler.close_connection = True
        elif handler.path == MODELS_PATH:
            entry = {"id": self.model, "object": "model", "created": 1700000000, "owned_by": self.owned_by}
            if self.meta is not None:
                entry["meta"] = self.meta
            self._send_json(handler, 200, {"object": "list", "data": [entry]})
        else:
            self._send_json(handler, 404, {"error": {"message": "not found"}})

    def _start_outage_if_due(self) -> bool:
        """Count a chat request; whether it meets an outage (the one `down_after` starts, or one under way)."""
        with self._lock:
            self._chat_count += 1
            due = self.down_after is not None and self.outages == 0 and self._chat_count > self.down_after
            if not due:
                return self._down
            self._down = True  # at once: requests arriving before the listener is closed are not answered either
            self.outages += 1
        # On another thread: shutting the listener down waits for its serve loop, not for this handler.
        threading.Thread(target=self._shut, args=(self.down_for_s,), daemon=True).start()
        return True

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        prompt = completion_prompt(body) if handler.path == COMPLETIONS_PATH else last_user_message(body)
        generation = handler.path in (CHAT_PATH, COMPLETIONS_PATH)
        if generation and self._start_outage_if_due():
            with self._lock:
                self._requests.append(
                    RecordedRequest(handler.path, body, dict(handler.headers.items()), "down", prompt, time.time())
                )
            if self.outage == "503":
                self._send_json(handler, 503, _LOADING)
            else:
                handler.close_connection = True
            return
        outcome = self._outcome(prompt) if generation else "404"
        with self._lock:
            self._requests.append(
                RecordedRequest(handler.path, body, dict(handler.headers.items()), outcome, prompt, time.time())
            )
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        done = threading.Event()
        try:
            self._stop.wait(self._latency())
            if outcome == "hang":
                self._stop.wait(self.hang_s)
            self._done(done)  # before answering: the client may send its next request as soon as it reads ours
            self._respond(handler, outcome, body, prompt)
        finally:
            self._done(done)

    def _done(self, done: threading.Event) -> None:
        with self._lock:
            if not done.is_set():
                done.set()
                self._in_flight -= 1

    def _respond(self, handler: _Handler, outcome: str, body: Any, prompt: str | None) -> None:
        if outcome == "ok" and handler.path == COMPLETIONS_PATH:
            self._send_json(handler, 200, self._text_completion(body, prompt))
        elif outcome in ("ok", "null"):
            self._send_json(handler, 200, self._completion(body, prompt, null=outcome == "null"))
        elif outcome == "malformed":
            self._send_raw(handler, 200, b'{"id": "chatcmpl-x", "choices": [{"message": ')
        elif outcome == "hang":  # the wait happened in _handle
            handler.close_connection = True
        elif outcome == "drop":
            handler.close_connection = True
        elif outcome.isdigit():
            status = int(outcome)
            message = f"injected {status}"
            if status == 400:
                message += f"; you sent Authorization={handler.headers.get('Authorization')}"
            headers = {"Retry-After": "0"} if status == 429 else {}
            self._send_json(handler, status, {"error": {"message": message, "type": "injected"}}, headers)
        else:
            raise ValueError(f"unknown outcome {outcome!r}")

    def _completion(self, body: Any, prompt: str | None, null: bool = False) -> dict:
        content = None if null else self.reply(prompt, body) if self.reply is not None else f"echo: {prompt}"
        words = len(content.split()) if content else 0
        return {
            "id": f"chatcmpl-{random.getrandbits(32):08x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (body.get("model") or self.model) if isinstance(body, dict) else self.model,
            "system_fingerprint": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": len(str(prompt).split()),
                "completion_tokens": words,
                "total_tokens": len(str(prompt).split()) + words,
            },
        }

    def _text_completion(self, body: Any, prompt: str | None) -> dict:
        reply = self.reply(prompt, body) if self.reply is not None else None
        text = f" {reply}" if reply is not None else f" echo: {prompt}"
        stops = (body.get("stop") or []) if isinstance(body, dict) else []
        ends = [at for at in (text.find(s) for s in ([stops] if isinstance(stops, str) else stops) if s) if at >= 0]
        text = text[: min(ends)] if ends else text
        return {
            "id": f"cmpl-{random.getrandbits(32):08x}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": (body.get("model") or self.model) if isinstance(body, dict) else self.model,
            "choices": [{"index": 0, "finish_reason": "stop" if ends else "length", "text": text, "logprobs": None}],
        }

    def _send_json(self, handler: _Handler, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode(), headers)

    @staticmethod
    def _send_raw(handler: _Handler, status: int, data: bytes, headers: Mapping[str, str] = {}) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timed out) first
            handler.close_connection = True


def main() -> None:
    """Serve from a separate process (for benchmarks): print the base URL, serve until stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible stub server")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--max-lifetime", type=float, default=600.0, help="exit after this many seconds regardless")
    args = parser.parse_args()
    with OpenAIStubServer(latency_s=args.latency) as server:
        print(server.base_url, flush=True)
        watcher = threading.Thread(target=sys.stdin.read, daemon=True)  # returns at EOF: the parent is gone
        watcher.start()
        watcher.join(timeout=args.max_lifetime)


if __name__ == "__main__":
    main()
