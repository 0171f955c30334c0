"""Server-backend faults: a server that accepts connections but never answers, one that answers slowly."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

import pytest

from wvlp.data.llm import BackendUnavailableError, GenerationRequest, GenerationResult, ServerBackend, build_backend

from tests.helpers import chat, run
from tests.openai_server import OpenAIStubServer, last_user_message


@dataclass
class RawRequest:
    """One request as the raw server read it."""

    method: str
    path: str
    headers: dict[str, str]


class LoopbackServer:
    """A raw HTTP server on 127.0.0.1 that accepts every connection at once and answers each request after a delay.

    `answer_after_s` maps a method to its delay; None (or a method not listed) is never answered: the connection stays
    open and silent. Answers are the stub's chat completion (an echo of the last user message), one per connection.
    Everything stops when the context exits, or `lifetime_s` after the start, whichever comes first.
    """

    def __init__(self, answer_after_s: MutableMapping[str, float | None], lifetime_s: float = 30.0):
        self.answer_after_s = answer_after_s
        self.lifetime_s = lifetime_s
        self.requests: list[RawRequest] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:43211/v1."""
        return f"http://127.0.0.1:{self._port}/v1"

    def __enter__(self) -> LoopbackServer:
        self._deadline = time.monotonic() + self.lifetime_s
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._port = self._sock.getsockname()[1]
        self._sock.settimeout(0.05)  # the accept loop checks for the stop that often
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _left(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def _accept_loop(self) -> None:
        while not self._stop.is_set() and self._left() > 0:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return
            self._spawn(self._serve, conn)
        self._stop.set()  # the lifetime is over: silent connections close too, and new ones are refused
        self._sock.close()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(self._left() or 0.01)
            try:
                head, body = self._read_request(conn)
            except OSError:
                return
            method, path = head[0].split(" ")[:2]
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            self.requests.append(RawRequest(method, path, {k.lower(): v for k, v in headers.items()}))
            delay = self.answer_after_s.get(method)
            if delay is None:
                self._stop.wait(self._left())  # silent until the end, then the connection just closes
                return
            if self._stop.wait(delay):
                return
            payload = json.loads(body) if body else None
            data = json.dumps(OpenAIStubServer()._completion(payload, last_user_message(payload))).encode()
            head_out = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            try:
                conn.sendall(head_out.encode() + b"Connection: close\r\n\r\n" + data)
            except OSError:  # the client gave up first
                pass

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[list[str], bytes]:
        """The request line and header lines, and the body (by Content-Length)."""

        def more(data: bytes) -> bytes:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("the client closed the connection")
            return data + chunk

        data = b""
        while b"\r\n\r\n" not in data:
            data = more(data)
        raw_head, body = data.split(b"\r\n\r\n", 1)
        head = raw_head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:")), 0)
        while len(body) < length:
            body = more(body)
        return head, body


def test_unresponsive_server_is_reported_within_the_connect_timeout(token):
    """Defect 24: the shipped defaults (60 s per attempt, 5 retries) used to take ~6 minutes to report this."""
    results: list[GenerationResult] = []
    with LoopbackServer({}) as server:  # accepts every connection, answers nothing
        backend = ServerBackend(server.base_url, model="stub")  # the shipped defaults, untouched
        requests = [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(8)]
        started = time.perf_counter()
        with pytest.raises(BackendUnavailableError) as info:
            backend.generate(requests, results.append)
        elapsed = time.perf_counter() - started
        seen = list(server.requests)
    # Documented bound: connecting, then the first byte of the preflight's answer, each within connect_timeout_s.
    assert backend.connect_timeout_s * 0.9 <= elapsed < 2 * backend.connect_timeout_s, elapsed
    assert 2 * backend.connect_timeout_s < backend.read_timeout_s  # sooner than even one chat attempt could time out
    message = str(info.value)
    assert backend.base_url in message and "accepted the connection but sent no response" in message, message
    assert f"within {backend.connect_timeout_s:g}s" in message and token not in message
    assert [(r.method, r.path) for r in seen] == [("GET", "/v1/models")]  # no retry, no chat request sent
    assert "authorization" not in seen[0].headers  # the preflight carries no token
    assert results == []


def test_slow_server_within_the_timeouts_still_works(token):
    """A preflight answered after a while and a completion slower than connect_timeout_s: one attempt each."""
    with LoopbackServer({"GET": 1.0, "POST": None}) as server:
        backend = ServerBackend(server.base_url, model="stub")  # the shipped defaults, untouched
        # Slower than the preflight may take, well within the per-attempt timeout of a completion.
        server.answer_after_s["POST"] = backend.connect_timeout_s + 1.0
        assert server.answer_after_s["POST"] < backend.read_timeout_s / 2
        results = run(backend, [GenerationRequest("a", chat("slow but fine"))])
        seen = list(server.requests)
    result = results["a"]
    assert result.error is None and result.text == "echo: slow but fine" and result.attempts == 1, result
    assert result.latency_s > backend.connect_timeout_s
    assert [(r.method, r.path) for r in seen] == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert seen[1].headers["authorization"] == f"Bearer {token}"


def test_timeout_settings_and_the_former_timeout_s():
    url = "http://127.0.0.1:9/v1"
    backend = build_backend({"type": "server", "base_url": url, "connect_timeout_s": 3, "read_timeout_s": 300})
    assert (backend.connect_timeout_s, backend.read_timeout_s) == (3.0, 300.0)
    assert "connect_timeout_s=3.0" in repr(backend) and "read_timeout_s=300.0" in repr(backend)
    # Separate now: a short read timeout no longer shortens connecting, nor a long one lengthens it.
    assert ServerBackend(url, read_timeout_s=2).connect_timeout_s == 10.0
    with pytest.warns(FutureWarning, match=r"llm.timeout_s=45 is now called read_timeout_s"):
        old = build_backend({"type": "server", "base_url": url, "timeout_s": 45})
    assert old.read_timeout_s == 45.0 and old.connect_timeout_s == 10.0
    with pytest.raises(ValueError, match=r"llm.timeout_s=45 and llm.read_timeout_s=60 are both set"):
        build_backend({"type": "server", "base_url": url, "timeout_s": 45, "read_timeout_s": 60})
    with pytest.raises(ValueError, match="connect_timeout_s > 0"):
        ServerBackend(url, connect_timeout_s=0)
    with pytest.raises(ValueError, match="read_timeout_s > 0"):
        ServerBackend(url, read_timeout_s=0)
    with pytest.raises(ValueError, match="server_patience_s >= 0"):
        ServerBackend(url, server_patience_s=-1)


def test_read_and_connect_timeouts_apply_separately(token):
    """An answer slower than read_timeout_s is retried and fails; one slower than connect_timeout_s is fine."""
    with OpenAIStubServer(latency_s=0.6) as server:  # every completion takes 0.6 s, /v1/models answers at once
        short_read = ServerBackend(
            server.base_url, read_timeout_s=0.2, connect_timeout_s=5, max_retries=1, backoff_base_s=0.01
        )
        started = time.perf_counter()
        failed = run(short_read, [GenerationRequest("slow", chat("slow"))])["slow"]
        elapsed = time.perf_counter() - started
        assert len(server.requests_for("slow")) == 2
        # A slow answer is no outage: the server is not polled for it, only the preflight went to /v1/models.
        assert [r.path for r in server.get_requests] == ["/v1/models"]
        short_connect = ServerBackend(server.base_url, read_timeout_s=3, connect_timeout_s=0.1, max_retries=0)
        ok = run(short_connect, [GenerationRequest("fine", chat("fine"))])["fine"]
    assert failed.text is None and failed.attempts == 2
    assert failed.error == "no answer within 0.2s (read_timeout_s) (after 2 attempts)"
    assert elapsed < 2, elapsed  # two reads of 0.2 s, not the 5 s connect timeout
    assert ok.error is None and ok.text == "echo: fine" and ok.attempts == 1 and ok.latency_s > 0.5
