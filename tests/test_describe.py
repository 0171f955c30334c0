"""Descriptions: prompts, resumable generation against a loopback OpenAI server (SIGKILL mid-run), cleaning."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from wvlp.data.clean import DROP_REASONS, clean_descriptions, clean_text, completion_answer, write_stats
from wvlp.data.generate import (
    DECODING_DEFAULTS,
    GenerationCache,
    description_id,
    generate_descriptions,
    generation_key,
    request_seed,
)
from wvlp.data.llm import ServerBackend
from wvlp.data.prompts import (
    COMPLETION_SEPARATOR,
    PromptTemplate,
    load_prompts,
    render,
    render_completion,
    render_user_prompt,
    template_hash,
)
from wvlp.data.sources import ClassInfo, FashionMNISTSource

from tests.helpers import EchoBackend
from tests.openai_server import OpenAIStubServer

ROOT = Path(__file__).resolve().parents[1]
DECODING = {"max_new_tokens": 32, "temperature": 0.7, "top_p": 0.9}
PROVENANCE = {
    "description_id",
    "class_id",
    "label",
    "class_name",
    "prompt_id",
    "template",
    "sample_index",
    "raw_text",
    "llm",
    "llm_revision",
    "prompting",
    "template_hash",
    "decoding",
    "seed",
    "created_at",
    "error",
}


@pytest.fixture(scope="module")
def classes():
    return FashionMNISTSource().classes


@pytest.fixture(scope="module")
def prompts():
    return load_prompts()


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------------------------------------------------ prompts


def test_nine_packaged_prompts(prompts, classes):
    assert len(prompts) == 9 and len({p.id for p in prompts}) == 9
    aspects = [p.aspect for p in prompts]
    assert {a: aspects.count(a) for a in set(aspects)} == {
        "appearance": 2,
        "parts": 1,
        "materials": 1,
        "scene": 2,
        "co-occurrence": 1,
        "spatial": 1,
        "caption": 1,
    }
    assert all("{label}" in p.template and p.system for p in prompts)
    boot = classes[9]
    messages = render(prompts[0], boot)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "ankle boot" in messages[1]["content"] and "{" not in messages[1]["content"]
    with_gloss = render_user_prompt(prompts[0], boot, with_gloss=True)
    assert boot.gloss in with_gloss and with_gloss.endswith(messages[1]["content"])


def write_prompts(tmp_path, templates, system=None, **top_level):
    path = tmp_path / "prompts.yaml"
    data = {"system": system, "templates": templates} if system else {"templates": templates}
    path.write_text(yaml.safe_dump({**data, **top_level}))
    return path


def test_prompt_validation(tmp_path):
    ok = {"id": "ok", "aspect": "appearance", "template": "Describe the {label}."}
    assert load_prompts(write_prompts(tmp_path, [ok])) == [PromptTemplate("ok", "Describe the {label}.", "appearance")]
    no_label = {"id": "no_slot", "aspect": "appearance", "template": "Describe the thing."}
    with pytest.raises(ValueError, match="'no_slot'.*no \\{label\\} slot"):
        load_prompts(write_prompts(tmp_path, [ok, no_label]))
    other = {"id": "extra", "aspect": "scene", "template": "The {label} in {place}."}
    with pytest.raises(ValueError, match="'extra'.*unknown field.*place"):
        load_prompts(write_prompts(tmp_path, [other]))
    with pytest.raises(ValueError, match="'ok'.*duplicate id"):
        load_prompts(write_prompts(tmp_path, [ok, ok]))
    broken = {"id": "braces", "aspect": "scene", "template": "The {label"}
    with pytest.raises(ValueError, match="'braces'.*malformed braces"):
        load_prompts(write_prompts(tmp_path, [broken]))
    with pytest.raises(ValueError, match="'ok'.*missing key.*aspect"):
        load_prompts(write_prompts(tmp_path, [{"id": "ok", "template": "{label}"}]))


def test_completion_prompts_and_few_shot_examples(prompts, classes):
    few_shot_objects = ["kettle", "bicycle", "umbrella", "teapot"]
    for template in prompts:
        assert template.completion and "{label}" in template.completion and template.stop == ("\n",)
        assert [e.label for e in template.examples] == few_shot_objects and all(e.gloss for e in template.examples)
    for cls in classes:
        names = {cls.prompt_name, cls.name, *cls.name.split("/"), *cls.synonyms}
        for template in prompts:
            prompt = render_completion(template, cls, with_gloss=True, few_shot=True)
            *prefix, asked = prompt.split(COMPLETION_SEPARATOR)
            heading = template.completion.format(label=cls.prompt_name)
            assert asked == f"{cls.prompt_name[0].upper()}{cls.prompt_name[1:]}: {cls.gloss}.\n{heading}\n"
            assert len(prefix) == 4 and all(e.text in prompt for e in template.examples)
            assert all(block.count("\n") == 2 for block in prefix)  # gloss, heading, answer: one line each
            for name in names:  # no example is about, or mentions, the asked category
                assert not re.search(rf"\b{re.escape(name.removesuffix('s'))}(e?s)?\b", "\n".join(prefix), re.I), (
                    name,
                    template.id,
                )
    # Without examples too the answer gets a line of its own: a base model would open it with a newline (the stop).
    assert render_completion(prompts[0], classes[8]) == "The shape, size and colours of the bag:\n"


def test_few_shot_prefix_leaves_out_the_asked_category(prompts):
    teapot = ClassInfo(label=0, class_id="teapot", name="Teapot", prompt_name="teapot", gloss="a pot for tea")
    umbrellas = ClassInfo(label=1, class_id="u", name="Umbrella stand", prompt_name="umbrella stand")
    for template in prompts:
        prompt = render_completion(template, teapot, few_shot=True)
        *prefix, asked = prompt.split(COMPLETION_SEPARATOR)
        assert len(prefix) == 3 and "teapot" not in "\n".join(prefix).lower()
        assert asked == template.completion.format(label="teapot") + "\n"
        prefix = render_completion(template, umbrellas, few_shot=True).split(COMPLETION_SEPARATOR)[:-1]
        assert len(prefix) == 3 and "umbrella" not in "\n".join(prefix).lower()


def test_completion_prompt_validation_and_template_hash(tmp_path, prompts):
    ok = {"id": "ok", "aspect": "parts", "template": "Parts of the {label}?", "completion": "Parts of the {label}:"}
    loaded = load_prompts(
        write_prompts(tmp_path, [{**ok, "examples": {"kettle": "A lid."}}], few_shot={"kettle": None})
    )
    assert loaded[0].completion == "Parts of the {label}:" and loaded[0].examples[0].text == "A lid."
    with pytest.raises(ValueError, match="'ok'.*completion has no \\{label\\} slot"):
        load_prompts(write_prompts(tmp_path, [{**ok, "completion": "Parts:"}]))
    with pytest.raises(ValueError, match=r"'ok'.*example object\(s\) \['kettle'\] are not listed"):
        load_prompts(write_prompts(tmp_path, [{**ok, "examples": {"kettle": "A lid."}}]))
    with pytest.raises(ValueError, match="'ok'.*unknown key.*'shots'"):
        load_prompts(write_prompts(tmp_path, [{**ok, "shots": 3}]))
    with pytest.raises(ValueError, match="'stop' must be a list of non-empty strings"):
        load_prompts(write_prompts(tmp_path, [ok], stop="\n"))
    template = prompts[0]
    hashes = {
        template_hash(template, "chat"),
        template_hash(template, "chat", with_gloss=True),
        template_hash(template, "completion"),
        template_hash(template, "completion", few_shot=True),
        template_hash(dataclasses.replace(template, completion=template.completion + " "), "completion"),
    }
    assert len(hashes) == 5 and all(re.fullmatch(r"[0-9a-f]{12}", h) for h in hashes)
    again = load_prompts()[0]  # stable across loads of the same file
    assert template_hash(template, "completion", few_shot=True) == template_hash(again, "completion", few_shot=True)
    assert template_hash(template, "chat") == template_hash(again, "chat")


@pytest.mark.parametrize("name", ["fashion-mnist.yaml", "fashion-mnist-gemma.yaml", "server.yaml"])
def test_describe_configs_parse(name):
    from wvlp.data.pipeline import load_describe_config

    config = load_describe_config(ROOT / "dataset_builder" / "configs" / name)
    if name == "fashion-mnist-gemma.yaml":
        base = load_describe_config(ROOT / "dataset_builder" / "configs" / "fashion-mnist.yaml")
        assert config.llm == {**base.llm, "model": "gemma3-270m", "prompting": "completion", "few_shot": True}
        # Only the describer differs, and each corpus's cross-LLM queries come from the other one.
        assert dataclasses.replace(config, output=base.output, llm=base.llm, query_describer=None) == (
            dataclasses.replace(base, query_describer=None)
        )
        assert config.query_describer["llm"] == base.llm and base.query_describer["llm"] == config.llm


# ----------------------------------------------------------------------------------------- keys and cache


def test_keys_and_seeds_are_stable():
    key = generation_key("n02773037", "caption", 2)
    assert key == "n02773037|caption|2"
    assert request_seed(0, key) == request_seed(0, key) != request_seed(1, key)
    assert 0 <= request_seed(0, key) < 2**31
    assert description_id(key) == description_id("n02773037|caption|2") != description_id("n02773037|caption|1")
    with pytest.raises(ValueError, match="contains '\\|'"):
        generation_key("a|b", "caption", 0)


def test_truncated_trailing_line_is_ignored_and_cut_off(tmp_path, classes, prompts):
    cache = tmp_path / "gen.jsonl"
    first = EchoBackend()
    records = generate_descriptions(classes[:2], prompts[:2], first, 2, cache, DECODING, seed=3, progress=False)
    assert len(records) == len(first.requested) == 8
    assert all(PROVENANCE <= set(r) and r["error"] is None for r in records)
    good = lines_of(cache)
    lost = json.loads(good[-1])["key"]
    # A kill -9 in the middle of the last write: its line is half there, with no newline.
    cache.write_bytes(b"".join(good[:-1]) + good[-1][:25])
    assert GenerationCache(cache).completed_keys() == {r["key"] for r in records} - {lost}
    second = EchoBackend()
    again = generate_descriptions(classes[:2], prompts[:2], second, 2, cache, DECODING, seed=3, progress=False)
    assert [r.key for r in second.requested] == [lost]
    assert [r["key"] for r in again] == [r["key"] for r in records]
    after = lines_of(cache)
    assert after[:-1] == good[:-1] and len(after) == 8 and all(json.loads(line) for line in after)
    assert json.loads(after[-1])["raw_text"] == json.loads(good[-1])["raw_text"]


def test_corrupt_middle_line_and_duplicate_keys(tmp_path):
    cache = tmp_path / "gen.jsonl"
    rows = [{"key": "a|p|0", "raw_text": "first"}, {"key": "a|p|0", "raw_text": "second"}, {"key": "b|p|0"}]
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = GenerationCache(cache)
    assert loaded.completed_keys() == {"a|p|0", "b|p|0"} and loaded.get("a|p|0")["raw_text"] == "first"
    loaded.close()  # one process at a time holds a cache
    cache.write_text(json.dumps(rows[0]) + "\n{not json\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(ValueError, match="gen.jsonl:2: corrupt line"):
        GenerationCache(cache)
    cache.write_text(json.dumps(rows[0]) + "\n{not json\n")  # a corrupt last line is a torn write
    assert GenerationCache(cache).completed_keys() == {"a|p|0"}


def test_failed_generations_are_retried_on_rerun(tmp_path, classes, prompts):
    cache = tmp_path / "gen.jsonl"
    failing = generation_key(classes[0].class_id, prompts[1].id, 1)
    first = EchoBackend(fail={failing})
    records = generate_descriptions(classes[:1], prompts[:2], first, 2, cache, DECODING, seed=0, progress=False)
    failed = [r for r in records if r["error"] is not None]
    assert [r["key"] for r in failed] == [failing] and failed[0]["raw_text"] is None
    assert failing not in GenerationCache(cache).completed_keys()
    assert [f["key"] for f in GenerationCache(cache).failures()] == [failing]
    second = EchoBackend()
    records = generate_descriptions(classes[:1], prompts[:2], second, 2, cache, DECODING, seed=0, progress=False)
    assert [r.key for r in second.requested] == [failing]
    assert all(r["error"] is None for r in records) and len(lines_of(cache)) == 4


def test_rerun_with_other_settings_warns_and_bad_decoding_fails(tmp_path, classes, prompts):
    cache = tmp_path / "gen.jsonl"
    generate_descriptions(classes[:1], prompts[:1], EchoBackend(), 2, cache, DECODING, seed=0, progress=False)
    backend = EchoBackend()
    with pytest.warns(UserWarning, match="differ from this run in .*'decoding': 2"):
        generate_descriptions(
            classes[:1], prompts[:1], backend, 2, cache, {"temperature": 0.1}, seed=0, progress=False
        )
    assert backend.requested == []  # reused as they are
    with pytest.raises(ValueError, match=r"unknown decoding key\(s\) \['top_a'\]"):
        generate_descriptions(classes[:1], prompts[:1], backend, 2, cache, {"top_a": 5}, seed=0, progress=False)
    for bad, message in [
        ({"top_k": 0}, "top_k must be -1 \\(no top-k cut\\) or a positive integer, got 0"),
        ({"min_p": 1.5}, "min_p must be in \\[0, 1\\), got 1.5"),
        ({"repetition_penalty": 0}, "repetition_penalty must be > 0"),
        ({"presence_penalty": 3}, "presence_penalty must be in \\[-2, 2\\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            generate_descriptions(classes[:1], prompts[:1], backend, 2, cache, bad, seed=0, progress=False)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        generate_descriptions(classes[:1], prompts[:1], backend, 0, cache, DECODING, seed=0, progress=False)


def test_failed_generation_against_the_server_is_retried(tmp_path, classes, prompts):
    """Through the real ServerBackend: a non-retryable HTTP 400 fails one key, the rerun asks for that key only."""
    cache = tmp_path / "gen.jsonl"
    cls, template = classes[7], prompts[8]
    prompt = render_user_prompt(template, cls)
    with OpenAIStubServer(scripts_by_prompt={prompt: ["400"]}) as server:
        backend = ServerBackend(server.base_url, model="stub", concurrency=1, max_retries=0)
        records = generate_descriptions([cls], [template], backend, 2, cache, DECODING, seed=0, progress=False)
        assert [r["error"] is None for r in records] == [False, True] or [r["error"] is None for r in records] == [
            True,
            False,
        ]
        failed_key = next(r["key"] for r in records if r["error"])
        assert "HTTP 400" in next(r["error"] for r in records if r["error"])
        before = len(server.requests)
        records = generate_descriptions([cls], [template], backend, 2, cache, DECODING, seed=0, progress=False)
        rerun = server.requests[before:]
    assert [r.body["seed"] for r in rerun] == [request_seed(0, failed_key)]
    assert all(r["error"] is None and r["raw_text"] == f"echo: {prompt}" for r in records)


def test_completion_provenance_against_the_server(tmp_path, classes, prompts):
    """Completion prompting end to end: the backend's mode decides the requests, the records say which it was."""
    cache = tmp_path / "gen.jsonl"
    with OpenAIStubServer() as server:
        backend = ServerBackend(server.base_url, model="stub", prompting="completion", few_shot=True)
        records = generate_descriptions(
            classes[7:9], prompts[:2], backend, 1, cache, DECODING, seed=0, with_gloss=True, progress=False
        )
        sent = server.requests
    assert {r.path for r in sent} == {"/v1/completions"} and len(sent) == 4
    assert all(r.body["stop"] == ["\n"] and "messages" not in r.body for r in sent)
    for record in records:
        template = next(t for t in prompts if t.id == record["prompt_id"])
        assert PROVENANCE <= set(record) and record["error"] is None
        assert (record["prompting"], record["few_shot"], record["stop"]) == ("completion", True, ["\n"])
        assert record["template"] == template.completion
        assert record["template_hash"] == template_hash(template, "completion", with_gloss=True, few_shot=True)
        assert record["prompt"].startswith("Kettle: ") and record["prompt"] in {r.body["prompt"] for r in sent}
        assert record["raw_text"] == "echo: Kettle: " + template.examples[0].gloss + "."  # cut at the stop string
    chat = generate_descriptions(
        classes[7:8], prompts[:1], EchoBackend(), 1, tmp_path / "c.jsonl", DECODING, 0, progress=False
    )
    assert (chat[0]["prompting"], chat[0]["few_shot"], chat[0]["stop"]) == ("chat", False, [])
    assert chat[0]["template_hash"] == template_hash(prompts[0], "chat") != records[0]["template_hash"]
    with pytest.raises(ValueError, match=r"needs a `completion` heading in prompt template\(s\) \['plain'\]"):
        plain = PromptTemplate("plain", "Describe the {label}.", "appearance")
        generate_descriptions(classes[:1], [plain], backend, 1, tmp_path / "p.jsonl", DECODING, 0, progress=False)


def test_completion_answers_are_cut_before_cleaning(classes):
    bag = classes[8]
    raw = "A bag is a soft leather sack with two handles.\n\nKettle: a metal pot.\nThe shape of the kettle: It is"
    assert completion_answer(raw) == "A bag is a soft leather sack with two handles."
    assert completion_answer("A bag. | Next", ["|"]) == "A bag. " and completion_answer("No end") == "No end"
    record = {**make_record(bag, raw), "prompting": "completion", "stop": [], "prompt": "Shape of the bag:"}
    kept, _ = clean_descriptions([record], classes)
    assert [r["text"] for r in kept] == ["A bag is a soft leather sack with two handles."]
    # A server that echoes the heading back: the echo goes, as in chat mode.
    echoed = {**record, "raw_text": "Shape of the bag: A small bag of woven straw with a long strap."}
    assert clean_descriptions([echoed], classes)[0][0]["text"] == "A small bag of woven straw with a long strap."


# ----------------------------------------------------------------------------------- kill -9 and resume


GENERATE_SCRIPT = textwrap.dedent(
    """
    import sys
    from wvlp.data.generate import generate_descriptions
    from wvlp.data.llm import ServerBackend
    from wvlp.data.prompts import load_prompts
    from wvlp.data.sources import FashionMNISTSource

    base_url, cache = sys.argv[1], sys.argv[2]
    backend = ServerBackend(base_url, model="stub", concurrency=2, max_retries=0)
    classes = FashionMNISTSource().classes[:4]
    decoding = {"max_new_tokens": 32, "temperature": 0.7, "top_p": 0.9}
    generate_descriptions(classes, load_prompts(), backend, 3, cache, decoding, seed=11, progress=False)
    print("finished")
    """
)


@pytest.mark.slow  # a fresh interpreter
def test_resume_after_sigkill(tmp_path, classes, prompts):
    """Acceptance: a run killed with SIGKILL resumes with exactly the missing keys and keeps every finished row."""
    cache = tmp_path / "gen.jsonl"
    chosen = classes[:4]
    expected = {}  # (user prompt, seed) -> key: how the server's log is mapped back to keys
    for cls in chosen:
        for template in prompts:
            for index in range(3):
                key = generation_key(cls.class_id, template.id, index)
                expected[(render_user_prompt(template, cls), request_seed(11, key))] = key
    assert len(expected) == 4 * 9 * 3
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    with OpenAIStubServer(latency_s=0.05) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", GENERATE_SCRIPT, server.base_url, str(cache)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_bytes().count(b"\n") >= 20:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        first_run = {expected.get((r.prompt, r.body.get("seed"))) for r in server.requests if isinstance(r.body, dict)}
    before = cache.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]  # a torn last line, if the kill hit a write, is not a row
    done = {json.loads(line)["key"] for line in complete.splitlines()}
    assert 20 <= len(done) < len(expected) and done <= first_run

    # A second server: requests the killed process had on the wire cannot show up in the rerun's log.
    with OpenAIStubServer(latency_s=0.05) as server:
        backend = ServerBackend(server.base_url, model="stub", concurrency=4, max_retries=0)
        records = generate_descriptions(chosen, prompts, backend, 3, cache, DECODING, seed=11, progress=False)
        rerun = [expected[(r.prompt, r.body["seed"])] for r in server.requests]

    assert sorted(rerun) == sorted(set(expected.values()) - done)  # only the missing keys, each once
    assert [r["key"] for r in records] == list(dict.fromkeys(expected.values()))
    assert all(r["error"] is None and r["raw_text"].startswith("echo: ") for r in records)
    after = cache.read_bytes()
    assert after.startswith(complete)  # the rows written before the kill are byte-identical
    keys = [json.loads(line)["key"] for line in after.splitlines()]
    assert len(keys) == len(set(keys)) == len(expected)
    record = records[0]
    assert PROVENANCE <= set(record)
    assert record["llm"] == "stub" and record["decoding"] == {**DECODING_DEFAULTS, **DECODING}
    assert record["seed"] == request_seed(11, record["key"]) and record["base_seed"] == 11
    assert record["description_id"] == description_id(record["key"]) and record["created_at"].endswith("+00:00")


# ------------------------------------------------------------------------------------------------ cleaning


def test_clean_text_strips_chat_artefacts():
    prompt = "Describe the shape, size and colours the ankle boot usually has."
    cases = {
        "<|im_start|>assistant\nSure! Here's a description of the ankle boot:\n\n\"An ankle boot is short. It has a "
        'low heel."<|im_end|>\n<|im_start|>user\nMore?': "An ankle boot is short. It has a low heel.",
        f"Assistant: {prompt} It is black leather with a block heel.": "It is black leather with a block heel.",
        "- A black leather upper\n- A **rubber** sole\n1. A side zip": "A black leather upper. A rubber sole. A side zip.",
        "One.  Two  words. Three here. Four is cut": "One. Two words. Three here.",
        "“Ankle boots by the door”.": "Ankle boots by the door.",
        "The boot has a lacing system: eyelets.\nUser: thanks": "The boot has a lacing system: eyelets.",
        "describe the shape, size, and colours the ankle boot usually has: mostly brown suede.": "Mostly brown suede.",
        'It is leather. It is made of a material called "': "It is leather.",
        "Seen with:\n* Socks\n* running shoes\n* *\n---": "Seen with: Socks, running shoes.",
    }
    for raw, expected in cases.items():
        assert clean_text(raw, prompt) == expected, raw


@pytest.fixture(scope="module")
def embedder():
    from wvlp.data.knowledge import SentenceEmbedder

    return SentenceEmbedder()


def make_record(cls, raw, prompt_id="appearance_shape", index=0, error=None):
    key = generation_key(cls.class_id, prompt_id, index)
    return {
        "key": key,
        "description_id": description_id(key),
        "class_id": cls.class_id,
        "label": cls.label,
        "class_name": cls.name,
        "prompt_id": prompt_id,
        "template": "Describe the {label}.",
        "prompt": f"Describe the {cls.prompt_name}.",
        "sample_index": index,
        "raw_text": raw,
        "error": error,
    }


def test_clean_descriptions_drop_reasons(tmp_path, classes, embedder):
    boot, bag = classes[9], classes[8]
    inputs = [
        (boot, 'Sure! Here\'s a description:\n"An ankle boot is a short leather boot that covers the ankle."', None),
        (boot, "Describe the ankle boot. The ankle boot has a low block heel and a zip on the side.", None),
        (boot, "AN ANKLE BOOT is a short leather boot that covers the ankle!!", "duplicate"),
        (boot, None, "error"),
        (boot, "<|im_start|>assistant\n<|im_end|>", "empty"),
        (boot, "<start_of_turn>user\nDescribe the ankle boot.<end_of_turn>", "echo"),
        (boot, "I'm sorry, but I cannot describe this item.", "refusal"),
        (boot, "Une bottine en cuir noir avec un talon bas et une fermeture sur le côté.", "non_english"),
        (boot, "Black boot.", "too_short"),
        (boot, "The ankle boot " + "and very " * 70 + "warm.", "too_long"),
        (boot, "The stock market fell sharply after the central bank raised interest rates.", "off_topic"),
        (boot, "A leather bag and an ankle boot side by side on a shelf.", None),
        (bag, "A leather bag and an ankle boot side by side on a shelf.", None),  # duplicates are per class
        (bag, "A leather bag with a long shoulder strap and a brass buckle.", None),
    ]
    records = [
        make_record(cls, raw, index=i, error="HTTP 500" if reason == "error" else None)
        for i, (cls, raw, reason) in enumerate(inputs)
    ]
    kept, stats = clean_descriptions(records, classes, embedder=embedder)
    assert [r["text"] for r in kept] == [
        "An ankle boot is a short leather boot that covers the ankle.",
        "The ankle boot has a low block heel and a zip on the side.",
        "A leather bag and an ankle boot side by side on a shelf.",
        "A leather bag and an ankle boot side by side on a shelf.",
        "A leather bag with a long shoulder strap and a brass buckle.",
    ]
    assert kept[0]["raw_text"] == inputs[0][1] and kept[0]["description_id"] == records[0]["description_id"]
    expected = {reason: 1 for _, _, reason in inputs if reason}
    assert stats["dropped"] == {reason: expected.get(reason, 0) for reason in DROP_REASONS}
    assert stats["total"] == 14 and stats["kept"] == 5 and stats["kept"] + sum(stats["dropped"].values()) == 14
    assert stats["per_class"][boot.class_id]["kept"] == 3 and stats["per_class"][boot.class_id]["total"] == 12
    assert stats["per_class"][boot.class_id]["dropped"]["off_topic"] == 1
    assert stats["per_class"][bag.class_id] == {
        "label": 8,
        "name": "Bag",
        "total": 2,
        "kept": 2,
        "dropped": dict.fromkeys(DROP_REASONS, 0),
    }
    assert stats["per_class"][classes[0].class_id]["total"] == 0
    drops = {d["description_id"]: d["reason"] for d in stats["drops"]}
    assert drops == {r["description_id"]: reason for r, (_, _, reason) in zip(records, inputs) if reason}
    without_embedder, no_embedder_stats = clean_descriptions(records, classes)
    assert len(without_embedder) == 6 and no_embedder_stats["dropped"]["off_topic"] == 0
    path = write_stats(stats, tmp_path / "out" / "stats.json")
    assert json.loads(path.read_text())["dropped"] == stats["dropped"]


SYSTEM = (
    "You write short, concrete, visual descriptions of things that can appear in a photo. "
    "Answer in one to three plain English sentences, with no lists, headings or introduction."
)


def test_echoed_prompts_and_turn_markers_are_dropped_as_echo(classes):
    boot = classes[9]
    question = "Describe the shape, size and colours the ankle boot usually has."
    echoes = [
        "<start_of_turn>user\nDescribe the ankle boot.<end_of_turn>\n<start_of_turn>model\nAn ankle boot is short.",
        "<|im_start|>system\nYou write short descriptions of things in photos.<|im_end|>",
        "### Instruction:\nDescribe the ankle boot.\n\n### Response:\nAn ankle boot is short and made of leather.",
        "User: describe the ankle boot for me please",
        SYSTEM,  # the system prompt repeated
        "Answer in one to three plain English sentences, with no lists.",  # a piece of it
        "An ankle boot is a short boot. You write short, concrete, visual descriptions of things that can appear "
        "in a photo.",
        question,  # the question alone: nothing left once the leading echo is stripped
        f"An ankle boot is short. {question}",  # the question again after an answer
    ]
    answers = [
        f"{question} An ankle boot is short and made of brown leather.",  # a leading echo is stripped and kept
        "<start_of_turn>model\nAn ankle boot is a short boot that covers the ankle.<end_of_turn>",
        "An ankle boot is short and made of leather.<|im_end|>\n<|im_start|>user\nAnother one?",
        "An ankle boot has a low heel and a side zip, often in black leather.",
    ]
    records = []
    for i, raw in enumerate(echoes + answers):
        record = make_record(boot, raw, index=i)
        records.append({**record, "prompt": question, "system_prompt": SYSTEM})
    kept, stats = clean_descriptions(records, classes)
    reasons = {d["description_id"]: d["reason"] for d in stats["drops"]}
    assert [reasons.get(r["description_id"]) for r in records] == ["echo"] * len(echoes) + [None] * len(answers)
    assert stats["dropped"]["echo"] == len(echoes) and list(DROP_REASONS).index("echo") == 2
    assert [r["text"] for r in kept][:2] == [
        "An ankle boot is short and made of brown leather.",
        "An ankle boot is a short boot that covers the ankle.",
    ]
    # A record cached before the system prompt was recorded is still checked for markers and the question.
    old = {k: v for k, v in records[0].items() if k != "system_prompt"}
    assert clean_descriptions([old], classes)[1]["dropped"]["echo"] == 1


def test_clean_descriptions_drops_confusable_descriptions(classes, embedder):
    boot, bag, sneaker = classes[9], classes[8], classes[7]
    inputs = [
        (boot, "An ankle boot is a short leather boot that covers the ankle."),
        (boot, "A sneaker with white rubber soles and laces, worn for running."),
        (bag, "A leather bag with a long shoulder strap and a brass buckle."),
        (bag, "A handbag shaped like an ankle boot, with a heel and a zip on the side."),
        (sneaker, "A running sneaker with a cushioned sole and breathable mesh."),
    ]
    records = [make_record(cls, raw, index=i) for i, (cls, raw) in enumerate(inputs)]
    names = [c.prompt_name for c in classes]
    # Plain-loop reference: a description is confusable when some other class's name is more similar than its own.
    vectors = [np.asarray(v, dtype=np.float64) for v in embedder.embed([raw for _, raw in inputs] + names)]
    vectors = [v / np.linalg.norm(v) for v in vectors]
    texts, name_vectors = vectors[: len(inputs)], vectors[len(inputs) :]
    expected = set()
    for record, (cls, _), text in zip(records, inputs, texts):
        similarities = [float(text @ n) for n in name_vectors]
        if max(similarities) > similarities[classes.index(cls)]:
            expected.add(record["description_id"])
    assert records[1]["description_id"] in expected  # the fixture exercises the drop
    kept, stats = clean_descriptions(records, classes, embedder=embedder, drop_confusable=True)
    dropped = {d["description_id"] for d in stats["drops"] if d["reason"] == "confusable"}
    assert dropped == expected and stats["dropped"]["confusable"] == len(expected)
    assert {r["description_id"] for r in kept} == {r["description_id"] for r in records} - expected
    assert stats["settings"]["drop_confusable"] is True
    kept_all, stats_all = clean_descriptions(records, classes, embedder=embedder)
    assert len(kept_all) == len(records) and stats_all["dropped"]["confusable"] == 0
    with pytest.raises(ValueError, match="drop_confusable needs the sentence embedder"):
        clean_descriptions(records, classes, drop_confusable=True)


def test_clean_descriptions_errors(classes):
    other = make_record(classes[0], "text")
    other["class_id"] = "unknown:1"
    with pytest.raises(ValueError, match="class id 'unknown:1'"):
        clean_descriptions([other], classes)
    with pytest.raises(ValueError, match="min_words"):
        clean_descriptions([], classes, min_words=10, max_words=5)
