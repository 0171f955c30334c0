"""The description LLM backends: the server backend against a faulty loopback server, the local SmolLM2 backend."""

import asyncio
import dataclasses
import re
import socket
import time
from pathlib import Path

import pytest
import torch

from wvlp.data.llm import (
    NEUTRAL_SAMPLING,
    BackendUnavailableError,
    DescriptionBackend,
    GenerationRequest,
    GenerationResult,
    LocalTransformersBackend,
    ServerBackend,
    build_backend,
)
from wvlp.data.llm.local import first_stop

from tests.helpers import chat, run
from tests.openai_server import OpenAIStubServer

FAST = dict(read_timeout_s=1.0, backoff_base_s=0.01, backoff_max_s=0.05)


def test_server_recovers_from_every_retryable_fault(token):
    scripts = {
        "p0": ["500", "500"],
        "p1": ["429", "429", "429"],
        "p2": ["hang"],
        "p3": ["malformed", "503"],
        "p4": ["drop", "502"],
        "p5": ["hang", "500", "malformed", "429"],
    }
    rates = {"500": 0.15, "429": 0.1, "malformed": 0.05, "503": 0.05}
    max_retries = 5
    with OpenAIStubServer(latency_s=(0.005, 0.03), fault_rates=rates, scripts_by_prompt=scripts, seed=1) as server:
        backend = ServerBackend(server.base_url, model="stub", concurrency=8, max_retries=max_retries, **FAST)
        requests = [GenerationRequest(f"k{i}", chat(f"p{i}"), seed=i) for i in range(40)]
        results = run(backend, requests)
        recorded = server.requests
    for i in range(40):
        result = results[f"k{i}"]
        assert result.error is None and result.text == f"echo: p{i}", result
        assert 1 <= result.attempts <= max_retries + 1
        assert result.attempts == sum(r.prompt == f"p{i}" for r in recorded)
    for i, script in enumerate(scripts.values()):
        assert results[f"k{i}"].attempts == len(script) + 1
    assert {r.outcome for r in recorded} >= {"500", "429", "503", "502", "hang", "malformed", "drop", "ok"}
    body = next(r.body for r in recorded if r.prompt == "p7")
    assert body["model"] == "stub" and body["seed"] == 7 and body["max_tokens"] == 64
    assert body["temperature"] == 0.9 and body["top_p"] == 0.95 and body["messages"] == chat("p7")


def test_server_retries_are_bounded(token):
    scripts = {"always-500": ["500"] * 10, "always-hang": ["hang"] * 10, "always-malformed": ["malformed"] * 10}
    with OpenAIStubServer(scripts_by_prompt=scripts) as server:
        backend = ServerBackend(server.base_url, concurrency=4, max_retries=2, **FAST)
        prompts = [*scripts, "fine"]
        results = run(backend, [GenerationRequest(p, chat(p)) for p in prompts])
        for prompt in scripts:
            assert results[prompt].text is None and results[prompt].attempts == 3
            assert len(server.requests_for(prompt)) == 3
        assert "HTTP 500" in results["always-500"].error
        assert "no answer within 1s (read_timeout_s)" in results["always-hang"].error
        assert "malformed" in results["always-malformed"].error
        assert results["fine"].text == "echo: fine" and results["fine"].attempts == 1


@pytest.mark.parametrize("status", ["400", "401", "404", "422"])
def test_server_does_not_retry_client_errors(token, status):
    with OpenAIStubServer(scripts_by_prompt={"bad": [status]}) as server:
        backend = ServerBackend(server.base_url, max_retries=5, **FAST)
        results = run(backend, [GenerationRequest("bad", chat("bad")), GenerationRequest("good", chat("good"))])
        assert len(server.requests_for("bad")) == 1
    assert results["bad"].text is None and results["bad"].attempts == 1
    assert f"HTTP {status}" in results["bad"].error
    assert results["good"].text == "echo: good"


def test_server_respects_concurrency_limit(token):
    with OpenAIStubServer(latency_s=0.05, fault_rates={"500": 0.2}) as server:
        backend = ServerBackend(server.base_url, concurrency=5, max_retries=8, **FAST)
        results = run(backend, [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(60)])
        assert server.max_in_flight == 5
    assert all(r.error is None for r in results.values())


def test_token_is_sent_but_never_leaked(token):
    scripts = {"bad": ["400"], "down": ["500"] * 5}
    with OpenAIStubServer(scripts_by_prompt=scripts) as server:
        backend = ServerBackend(server.base_url, max_retries=1, **FAST)
        results = run(backend, [GenerationRequest(p, chat(p)) for p in ("bad", "down", "ok")])
        recorded = server.requests
    assert {r.headers.get("authorization") for r in recorded} == {f"Bearer {token}"}
    assert "Bearer ***" in results["bad"].error  # the server echoed the header back; it was redacted
    texts = [repr(backend), str(backend), *(repr(r) for r in results.values()), *(str(r) for r in results.values())]
    assert not any(token in text for text in texts)


def test_no_token_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("WVLP_LLM_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with OpenAIStubServer() as server:
        run(ServerBackend(server.base_url, **FAST), [GenerationRequest("a", chat("a"))])
        assert all("authorization" not in {k.lower() for k in r.headers} for r in server.requests)


def test_hf_token_is_the_fallback(monkeypatch):
    monkeypatch.delenv("WVLP_LLM_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_fallback_token")
    with OpenAIStubServer() as server:
        run(ServerBackend(server.base_url, **FAST), [GenerationRequest("a", chat("a"))])
        assert server.requests[0].headers["authorization"] == "Bearer hf_fallback_token"


def test_unreachable_server_raises(token):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = ServerBackend(f"http://127.0.0.1:{port}/v1", max_retries=2, **FAST)
    results: list[GenerationResult] = []
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match="unreachable after 3 attempts"):
        backend.generate([GenerationRequest(f"k{i}", chat("x")) for i in range(100)], results.append)
    assert time.perf_counter() - started < 5 and results == []


def test_server_works_under_hf_hub_offline(monkeypatch, token):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with OpenAIStubServer() as server:
        assert run(ServerBackend(server.base_url, **FAST), [GenerationRequest("a", chat("a"))])["a"].text == "echo: a"
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        ServerBackend("https://router.huggingface.co/v1", model="some/model")


def test_server_generate_inside_a_running_loop(token):
    with OpenAIStubServer(latency_s=0.01) as server:
        backend = ServerBackend(server.base_url, **FAST)
        requests = [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(5)]

        async def main() -> tuple[dict, dict]:
            from_sync = run(backend, requests)  # blocking call from inside a loop: runs on a helper thread
            collected: list[GenerationResult] = []
            await backend.agenerate(requests, collected.append)
            return from_sync, {r.key: r for r in collected}

        from_sync, from_async = asyncio.run(main())
    assert {k: r.text for k, r in from_sync.items()} == {k: r.text for k, r in from_async.items()}


def test_on_result_error_propagates_and_stops(token):
    with OpenAIStubServer(latency_s=0.01) as server:
        backend = ServerBackend(server.base_url, concurrency=2, **FAST)

        def on_result(result: GenerationResult) -> None:
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            backend.generate([GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(50)], on_result)
        assert len(server.requests) < 50


def test_build_backend_validates_spec(token):
    backend = build_backend({"type": "server", "base_url": "http://127.0.0.1:9/v1", "model": "m", "concurrency": 3})
    assert isinstance(backend, ServerBackend) and isinstance(backend, DescriptionBackend)
    assert (backend.name, backend.revision, backend.concurrency) == ("m", "m", 3)
    with pytest.raises(ValueError, match="'vllm'"):
        build_backend({"type": "vllm"})
    with pytest.raises(ValueError, match="'batchsize'"):
        build_backend({"type": "local", "batchsize": 8})
    with pytest.raises(ValueError, match="'batch_size'"):
        build_backend({"type": "server", "base_url": "http://127.0.0.1:9/v1", "batch_size": 8})
    with pytest.raises(FileNotFoundError):
        build_backend({"type": "local", "model": "/nonexistent/model"})


# ---- the local backend on the packaged SmolLM2-135M-Instruct ----------------------------------------------------

LABELS = ("T-shirt", "Sneaker", "Bag")


def describe(
    label: str, seed: int | None = 0, temperature: float = 0.9, max_new_tokens: int = 40
) -> GenerationRequest:
    messages = [{"role": "user", "content": f"Describe what a {label} looks like in one sentence."}]
    return GenerationRequest(label, messages, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


@pytest.fixture(scope="session")
def smollm2() -> LocalTransformersBackend:
    # The first run ever dequantises the GGUF into $WVLP_CACHE (~30 s); later runs load the cached folder.
    return LocalTransformersBackend(batch_size=8)


@pytest.mark.slow
def test_local_sampling_is_english_and_seeded(smollm2):
    assert smollm2.name == "SmolLM2-135M-Instruct.Q4_1" and re.fullmatch(r"[0-9a-f]{12}", smollm2.revision)
    batched = run(smollm2, [describe(label, seed=i) for i, label in enumerate(LABELS)])
    for label in LABELS:
        text = batched[label].text
        assert batched[label].error is None and text, batched[label]
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) >= 4 and sum(map(len, words)) >= 0.7 * len(text.replace(" ", "")), text
    # Same seed, different batch composition and order: the same text.
    alone = run(smollm2, [describe(label, seed=i) for i, label in reversed(list(enumerate(LABELS)))][:2])
    assert {k: r.text for k, r in alone.items()} == {k: batched[k].text for k in alone}
    other_seed = run(smollm2, [describe("Bag", seed=123)])
    assert other_seed["Bag"].text != batched["Bag"].text


@pytest.mark.slow
def test_local_greedy_batched_equals_unbatched(smollm2):
    # Different limits per row: rows leave the batch at different steps.
    requests = [describe(label, temperature=0.0, max_new_tokens=n) for label, n in zip(LABELS, (32, 8, 20))]
    batched = run(smollm2, requests)
    for request in requests:
        assert run(smollm2, [request])[request.key].text == batched[request.key].text
    assert len(smollm2.tokenizer(batched["Sneaker"].text)["input_ids"]) <= 8


@pytest.mark.slow
def test_local_bad_request_fails_alone(smollm2):
    bad = GenerationRequest("bad", [{"role": "user", "content": "hi"}], max_new_tokens=0)
    results = run(smollm2, [bad, describe("Bag", max_new_tokens=8)])
    assert results["bad"].text is None and "max_new_tokens" in results["bad"].error
    assert results["Bag"].error is None and results["Bag"].text


@pytest.mark.slow
def test_local_smollm2_serves_completion_requests(smollm2):
    # The prompting mode picks the requests generate.py sends; a request with a prompt is a completion on any model.
    requests = [dataclasses.replace(r, messages=[], stop=("\n",)) for r in gemma_requests((24, 24, 24))]
    results = run(smollm2, requests)
    assert all(r.error is None and r.text and "\n" not in r.text for r in results.values()), results


def test_local_cache_location(monkeypatch, tmp_path):
    from wvlp.data.llm import default_cache_dir

    monkeypatch.setenv("WVLP_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("WVLP_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "wvlp"


# ---- what a real server needs told, and what it tells back ---------------------------------------------------------

SAMPLING = dict(top_k=40, min_p=0.05, repetition_penalty=1.1, frequency_penalty=0.2, presence_penalty=-0.3)


def test_every_sampling_parameter_is_sent_neutral_ones_too(token):
    with OpenAIStubServer() as server:
        backend = ServerBackend(server.base_url, model="stub", **FAST)
        requests = [
            GenerationRequest("set", chat("set"), max_new_tokens=20, temperature=0.7, top_p=0.8, seed=3, **SAMPLING),
            GenerationRequest("neutral", chat("neutral")),
        ]
        run(backend, requests)
        bodies = {r.prompt: r.body for r in server.requests}
    assert bodies["set"] == {
        "model": "stub",
        "messages": chat("set"),
        "max_tokens": 20,
        "temperature": 0.7,
        "top_p": 0.8,
        "seed": 3,
        **SAMPLING,
        "repeat_penalty": 1.1,  # llama.cpp's name of repetition_penalty
        "stream": False,
    }
    # Left to itself llama.cpp would apply top_k=40 and min_p=0.05: the neutral values go out explicitly.
    neutral = bodies["neutral"]
    assert {k: neutral[k] for k in NEUTRAL_SAMPLING} == NEUTRAL_SAMPLING and neutral["repeat_penalty"] == 1.0
    assert "seed" not in neutral


def test_null_content_is_an_empty_result_and_not_retried(token):
    with OpenAIStubServer(scripts_by_prompt={"nothing": ["null"] * 6}) as server:
        backend = ServerBackend(server.base_url, max_retries=5, **FAST)
        results = run(backend, [GenerationRequest("nothing", chat("nothing")), GenerationRequest("a", chat("a"))])
        assert len(server.requests_for("nothing")) == 1
    assert results["nothing"].error is None and results["nothing"].text == "" and results["nothing"].attempts == 1
    assert results["a"].text == "echo: a"


def test_the_served_model_is_read_from_v1_models(token):
    meta = {"n_params": 7615616512, "n_ctx_train": 32768, "size": 4683073536}
    model_path = "/models/qwen2.5-7b-instruct-q4_k_m.gguf"
    with OpenAIStubServer(model=model_path, owned_by="llamacpp", meta=meta) as server:
        # llama.cpp serves its one model whatever name the client sends: the alias is not the weights.
        backend = ServerBackend(server.base_url, model="qwen-alias", **FAST)
        assert backend.server_model is None  # known once generation starts
        run(backend, [GenerationRequest("a", chat("a"))])
        assert [r.path for r in server.get_requests] == ["/v1/models"]
    assert backend.server_model == {"id": model_path, "owned_by": "llamacpp", "meta": meta}
    assert backend.name == "qwen-alias"


def test_a_missing_models_listing_is_not_fatal(token):
    with LoopbackStatus(404) as base_url:
        backend = ServerBackend(base_url, **FAST)
        with pytest.raises(BackendUnavailableError):  # nothing answers the chat either: it is gone, not hidden
            backend.generate([GenerationRequest("a", chat("a"))], lambda r: None)
    assert backend.server_model is None


class LoopbackStatus:
    """A server that answers every request with one status and closes: enough for a preflight, never a completion."""

    def __init__(self, status: int):
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.close_connection = True  # no answer

        self.status = status
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- a server that goes away mid-run -----------------------------------------------------------------------------


def test_an_outage_shorter_than_the_patience_is_waited_out(token):
    with OpenAIStubServer(down_after=3, down_for_s=1.0) as server:
        # No retries at all: only the patience can carry a request over the outage.
        backend = ServerBackend(server.base_url, concurrency=2, max_retries=0, server_patience_s=20, **FAST)
        results = run(backend, [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(10)])
        assert server.outages == 1 and not server.is_down
        dropped = [r for r in server.requests if r.outcome == "down"]
        probes = server.get_requests
    assert all(r.error is None for r in results.values()), [r.error for r in results.values() if r.error]
    assert dropped and max(r.attempts for r in results.values()) >= 2  # requests did meet the outage
    # The preflight, then the poll that found the server back (polls while it was down were refused).
    assert len(probes) >= 2 and probes[-1].received_at > dropped[0].received_at + 0.9


def test_an_outage_past_the_patience_fails_the_rest_without_sending(token):
    with OpenAIStubServer(down_after=2) as server:  # never comes back
        backend = ServerBackend(server.base_url, concurrency=1, max_retries=5, server_patience_s=0.5, **FAST)
        started = time.perf_counter()
        results = run(backend, [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(60)])
        elapsed = time.perf_counter() - started
    ok = [k for k, r in results.items() if r.error is None]
    failed = [r for r in results.values() if r.error is not None]
    assert len(ok) == 2 and len(failed) == 58 and elapsed < 10, elapsed
    assert all("was still down after 0.5s (llm.server_patience_s)" in r.error for r in failed)
    # Requests already started try once more at most; those not yet started are never sent.
    window = 2 * backend.concurrency + 16
    unsent = [r for r in failed if r.error.startswith("not sent:") and r.attempts == 0]
    assert len(unsent) >= 60 - len(ok) - window


def test_a_server_answering_503_while_it_reloads_is_waited_for(token):
    """llama.cpp answers every request with 503 "Loading model" while it loads: no connection error to see."""
    with OpenAIStubServer(down_after=2, down_for_s=1.0, outage="503") as server:
        backend = ServerBackend(server.base_url, concurrency=2, max_retries=1, server_patience_s=20, **FAST)
        results = run(backend, [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(8)])
        answered_503 = [r for r in server.requests if r.outcome == "down"]
        polls = server.get_requests
    assert all(r.error is None for r in results.values()), [r.error for r in results.values() if r.error]
    assert answered_503 and len(polls) >= 3  # the preflight, polls answered 503, the one that found it ready
    assert {r.outcome for r in polls[1:-1]} == {"down"} and polls[-1].outcome == "ok"
    with OpenAIStubServer(down_after=2, outage="503") as server:  # never ready again, no patience
        backend = ServerBackend(server.base_url, concurrency=1, max_retries=1, **FAST)
        results = run(backend, [GenerationRequest(f"k{i}", chat(f"p{i}")) for i in range(30)])
    failed = [r for r in results.values() if r.error]
    assert len(failed) == 28 and all("llm.server_patience_s" in r.error for r in failed)
    assert any("HTTP 503" in r.error for r in failed)  # the request that used up its retries says why


# ---- completion prompting: the server's /v1/completions path, stop strings, models without a chat template -------


def test_server_completions_path(token):
    with OpenAIStubServer() as server:
        backend = ServerBackend(server.base_url, model="stub", prompting="completion", few_shot=True, **FAST)
        assert (backend.prompting, backend.few_shot) == ("completion", True)
        prompt = "The parts of the kettle: A lid.\n\nThe parts of the bag:"
        completion = GenerationRequest(
            "c", [], max_new_tokens=24, temperature=0.7, top_p=0.8, seed=5, prompt=prompt, stop=("\n\n",)
        )
        results = run(backend, [completion, GenerationRequest("m", chat("chat still works"))])
        by_path = {r.path: r for r in server.requests}
    assert set(by_path) == {"/v1/completions", "/v1/chat/completions"}
    body = by_path["/v1/completions"].body
    assert body == {
        "model": "stub",
        "prompt": prompt,
        "stop": ["\n\n"],
        "max_tokens": 24,
        "temperature": 0.7,
        "top_p": 0.8,
        **NEUTRAL_SAMPLING,
        "repeat_penalty": 1.0,
        "stream": False,
        "seed": 5,
    }
    assert results["c"].text == "echo: The parts of the kettle: A lid."  # the stub cut it at the stop string
    assert by_path["/v1/chat/completions"].body["messages"] == chat("chat still works")
    assert results["m"].text == "echo: chat still works"


def test_prompting_options_are_checked():
    with pytest.raises(ValueError, match="prompting 'instruct' is unknown"):
        build_backend({"type": "server", "base_url": "http://127.0.0.1:9/v1", "prompting": "instruct"})
    with pytest.raises(ValueError, match="few_shot: true needs prompting: completion"):
        build_backend({"type": "local", "few_shot": True})
    backend = build_backend({"type": "server", "base_url": "http://127.0.0.1:9/v1"})
    assert (backend.prompting, backend.few_shot) == ("chat", False)


def test_chat_with_a_model_without_chat_template_fails_at_start_up(tmp_path):
    # The packaged Gemma is known to be a base model: refused before its GGUF is joined or dequantised.
    started = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"'gemma3-270m' \(google/gemma-3-270m\) has no chat template.*prompting: completion"
    ):
        build_backend({"type": "local", "model": "gemma3-270m"})
    assert time.perf_counter() - started < 5
    # Any other model folder: its tokenizer has no chat template.
    folder = save_tiny_completion_model(tmp_path / "tiny-base")
    with pytest.raises(ValueError, match=r"'tiny-base' .*has no chat template.*`prompting: completion`"):
        LocalTransformersBackend(folder)


def save_tiny_completion_model(folder: Path) -> Path:
    """A random tiny Llama over the MiniLM tokenizer (which has no chat template), saved as a transformers folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from wvlp.modeling import build_default_processor

    from tests.helpers import TINY_LM

    tokenizer = build_default_processor().tokenizer
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{**TINY_LM, "vocab_size": len(tokenizer)})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_local_completion_stops_at_the_stop_string(tmp_path):
    backend = LocalTransformersBackend(save_tiny_completion_model(tmp_path / "tiny"), prompting="completion")
    request = GenerationRequest("free", [], max_new_tokens=24, temperature=0.0, prompt="the shape of the kettle :")
    free = run(backend, [request])["free"].text
    words = free.split()
    assert len(words) >= 6, free
    stop = words[len(words) // 2]
    cut = run(backend, [dataclasses.replace(request, key="cut", stop=("\n\n", stop))])["cut"].text
    assert cut == free[: free.find(stop)].strip() and len(cut) < len(free)
    assert first_stop("a b\n\nc", ["\n\n", "b"]) == 2 and first_stop("abc", ["x", ""]) is None


# ---- the local backend on the packaged Gemma 3 270M base model, prompted by completion ---------------------------


@pytest.fixture(scope="session")
def gemma() -> LocalTransformersBackend:
    # The first run ever joins the GGUF's chunks and dequantises it into $WVLP_CACHE (~1 min); later runs load the
    # cached folder (~5 s).
    return LocalTransformersBackend("gemma3-270m", prompting="completion", few_shot=True, batch_size=8)


def gemma_requests(max_new_tokens: tuple[int, ...] = (40, 40, 40)) -> list[GenerationRequest]:
    from wvlp.data.prompts import load_prompts, render_completion
    from wvlp.data.sources import FashionMNISTSource

    by_name = {c.name: c for c in FashionMNISTSource().classes}
    template = next(t for t in load_prompts() if t.id == "appearance_shape")
    return [
        GenerationRequest(
            name,
            [],
            max_new_tokens=n,
            temperature=0.0,
            prompt=render_completion(template, by_name[name], with_gloss=True, few_shot=True),
            stop=template.stop,
        )
        for name, n in zip(("Trouser", "Sandal", "Bag"), max_new_tokens)
    ]


@pytest.mark.slow
def test_gemma_completion_is_english(gemma):
    assert (gemma.model_id, gemma.name, gemma.revision) == (
        "google/gemma-3-270m",
        "gemma-3-270m-q4_k_m",
        "a5fd3b62230a",
    )
    assert gemma.tokenizer.chat_template is None
    results = run(gemma, gemma_requests())
    for result in results.values():
        text = result.text
        assert result.error is None and text and "\n" not in text, result  # the stop string ended it
        words = re.findall(r"[A-Za-z]+", text)
        assert len(words) >= 4 and sum(map(len, words)) >= 0.7 * len(text.replace(" ", "")), text


@pytest.mark.slow
def test_gemma_greedy_batched_equals_unbatched(gemma):
    requests = gemma_requests((40, 8, 24))  # rows leave the batch at different steps
    batched = run(gemma, requests)
    for request in requests:
        assert run(gemma, [request])[request.key].text == batched[request.key].text
