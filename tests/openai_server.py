"""A loopback OpenAI-compatible chat-completions (and text-completions) server with fault injection, for tests.

    with OpenAIStubServer(latency_s=0.05, fault_rates={"500": 0.2}) as server:
        client(base_url=server.base_url)   # http://127.0.0.1:<port>/v1
        server.requests, server.max_in_flight

The answer is the last user message echoed back (`"echo: <message>"`), so it is deterministic from the request; at
`/v1/completions` it is `" echo: <prompt>"`, cut before the first of the request's `stop` strings, like a server.
The "message" that selects scripts below is then the whole prompt.
Each request gets an outcome, decided in this order:

1. `scripts_by_prompt[message]`: the outcomes of the successive attempts of that message, then "ok";
2. `script`: outcomes consumed in arrival order, then "ok";
3. `fault_rates`: a draw from a generator seeded by (seed, message, attempt number), so the same prompt meets the
   same faults at the same attempt whatever the interleaving of concurrent requests;
4. "ok".

Outcomes: "ok"; an HTTP status such as "500", "503", "429" (sent with `Retry-After: 0`) or "400" (its error body
echoes the Authorization header, like a careless server, to test that clients redact it); "malformed" (a 200 with a
truncated JSON body); "hang" (no answer until `hang_s` or shutdown, then the connection is closed); "drop" (the
connection is closed without an answer).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
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
        self.server.stub._send_json(self, 404, {"error": {"message": "not found"}})


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
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, prompt: str) -> list[RecordedRequest]:
        """The recorded requests whose last user message is `prompt`."""
        return [r for r in self.requests if r.prompt == prompt]

    def start(self) -> OpenAIStubServer:
        """Bind an ephemeral loopback port and serve in a daemon thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wake hanging handlers and close the socket (within about a second)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

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

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        prompt = completion_prompt(body) if handler.path == COMPLETIONS_PATH else last_user_message(body)
        outcome = self._outcome(prompt) if handler.path in (CHAT_PATH, COMPLETIONS_PATH) else "404"
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
        elif outcome == "ok":
            self._send_json(handler, 200, self._completion(body, prompt))
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

    def _completion(self, body: Any, prompt: str | None) -> dict:
        content = f"echo: {prompt}"
        return {
            "id": f"chatcmpl-{random.getrandbits(32):08x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": (body.get("model") or self.model) if isinstance(body, dict) else self.model,
            "system_fingerprint": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": len(str(prompt).split()),
                "completion_tokens": len(content.split()),
                "total_tokens": len(str(prompt).split()) + len(content.split()),
            },
        }

    def _text_completion(self, body: Any, prompt: str | None) -> dict:
        text = f" echo: {prompt}"
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
