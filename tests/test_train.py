"""train/run.py end to end on the tiny config: plain, accelerate, torchrun, resume, accumulation, LoRA."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import set_seed

from wvlp.data.template_corpus import write_template_corpus
from wvlp.train.config import load_config
from wvlp.train.run import build_model_and_processor, main

from tests.helpers import torchrun

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "train" / "configs" / "tiny.yaml")
VIT = (
    "model.config.vision_config={model_type: vit, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 64, image_size: 32, patch_size: 8}"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_template_corpus(tmp_path_factory.mktemp("corpus") / "corpus")


def run_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config",
        TINY,
        "--set",
        f"data.path={corpus}",
        "--set",
        f"training.output_dir={out}",
        *(item for pair in (("--set", e) for e in extra) for item in pair),
    ]


def logged_losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_tiny_run_trains_and_writes_the_run_folder(corpus, tmp_path):
    out = tmp_path / "run"
    metrics = main(run_args(corpus, out))
    losses = logged_losses(out)
    steps = sorted(losses)
    assert steps[-1] == 30 and losses[steps[-1]] < losses[steps[0]], losses
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "processor_config.json").is_file()
    keys = load_file(str(out / "model" / "model.safetensors")).keys()
    assert not [k for k in keys if k.startswith("teacher.") or "queue" in k]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config_hash"] == metrics["config_hash"] and "zero_shot_top1" in saved["zero_shot_after"]
    assert {p.name for p in (out / "plots").iterdir()} >= {"loss.png", "itc_loss.png", "mlm_loss.png"}
    checkpoint = load_file(str(out / "checkpoint-30" / "model.safetensors"))
    assert any(k.startswith("teacher.") for k in checkpoint), "checkpoints must carry the EMA teacher"
    published = json.loads((out / "model" / "config.json").read_text())
    assert "pretraining_config" not in published and str(tmp_path) not in json.dumps(published)
    assert json.loads((out / "checkpoint-30" / "config.json").read_text())["pretraining_config"]["queue_size"] == 0


def test_pretrained_init_continues_a_published_model_with_lora(corpus, tmp_path):
    first = tmp_path / "first"
    main(run_args(corpus, first, "training.max_steps=2", "training.save_steps=100"))
    sets = [
        "model.init=pretrained",
        f"model.path={first / 'model'}",
        "model.config.queue_size=4",  # flat, as older run configs give it: folded into pretraining_config
        "training.max_steps=2",
        "training.save_steps=100",
        "lora.enabled=true",
    ]
    model, _ = build_model_and_processor(load_config(TINY, [f"data.path={corpus}", *sets]).model)
    pretraining = model.config.pretraining_config
    assert pretraining.queue_size == 4 and model.image_queue.shape[0] == 4 and pretraining.imc_loss_weight == 1.0
    second = tmp_path / "second"
    main(run_args(corpus, second, *sets))
    assert "pretraining_config" not in json.loads((second / "model" / "config.json").read_text())
    missing = load_config(TINY, [f"data.path={corpus}", "model.init=pretrained", f"model.path={tmp_path / 'none'}"])
    with pytest.raises(FileNotFoundError, match="model.path="):
        build_model_and_processor(missing.model)


@pytest.mark.distributed
def test_accelerate_launch_cpu(corpus, tmp_path):
    out = tmp_path / "acc"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "train" / "run.py"),
        *run_args(corpus, out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = logged_losses(out)
    assert losses[max(losses)] < losses[min(losses)]


def test_unknown_key_and_missing_data_are_clear_errors(corpus, tmp_path):
    with pytest.raises(ValueError, match="data.no_such_key"):
        load_config(TINY, ["data.no_such_key=1"])
    with pytest.raises(ValueError, match="training.learning_rat"):
        load_config(TINY, ["training.learning_rat=1"])
    with pytest.raises(FileNotFoundError, match="data.path"):
        main(run_args(tmp_path / "missing", tmp_path / "o"))


@pytest.mark.distributed
def test_torchrun_two_processes_equal_one_process(corpus, tmp_path):
    common = [VIT, "training.max_steps=5", "training.save_steps=100", "model.config.queue_size=32"]
    single = tmp_path / "single"
    main(run_args(corpus, single, *common, "training.per_device_train_batch_size=8"))
    double = tmp_path / "double"
    cmd = torchrun(
        2,
        str(ROOT / "train" / "run.py"),
        *run_args(corpus, double, *common, "training.per_device_train_batch_size=4"),
    )
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(single / "model" / "model.safetensors"))
    b = load_file(str(double / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=0, msg=key)
    # Equal because both trained the same way, not because neither trained: most weights left their init.
    set_seed(0)
    initial = build_model_and_processor(load_config(TINY, [f"data.path={corpus}", *common]).model)[0].wvlp.state_dict()
    moved = [key for key in a if key in initial and not torch.allclose(a[key], initial[key], atol=1e-6)]
    assert len(moved) > len(a) // 2, f"only {len(moved)} of {len(a)} tensors changed"


@pytest.mark.slow  # a fresh interpreter
# Killed at step 10: of a full run; in the full phase after 5 locked-text steps; in the locked-text phase, the
# resumed run then crossing into the full phase at step 15.
@pytest.mark.parametrize("locked_text_steps", [0, 5, 15])
def test_kill_and_resume_continues_exactly(corpus, tmp_path, locked_text_steps):
    common = [
        "training.max_steps=20",
        "training.logging_steps=1",
        "training.save_steps=10",
        f"run.locked_text_steps={locked_text_steps}",
    ]
    full = tmp_path / "full"
    main(run_args(corpus, full, *common))
    killed = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "train" / "run.py"), *run_args(corpus, killed, *common)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoint-10").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint-10").is_dir()
    main(run_args(corpus, killed, *common) + ["--resume", str(killed / "checkpoint-10")])
    expected, resumed = logged_losses(full), logged_losses(killed)
    for step in range(11, 21):
        assert resumed[step] == pytest.approx(expected[step], abs=1e-6), step
    if locked_text_steps:
        history = json.loads((killed / "trainer_state.json").read_text())["log_history"]
        with_mlm = sorted(e["step"] for e in history if "mlm_loss" in e)
        assert with_mlm[0] == locked_text_steps + 1, "the full phase starts after the locked-text steps"


def test_locked_text_run_keeps_the_text_tower_and_reuses_its_cache_on_resume(corpus, tmp_path):
    out = tmp_path / "run"
    common = ["training.max_steps=10", "training.save_steps=5", "run.locked_text_steps=10", "run.zero_shot_every=5"]
    main(run_args(corpus, out, *common))
    (cache,) = (out / "text-cache").iterdir()
    set_seed(0)
    initial = build_model_and_processor(load_config(TINY, [f"data.path={corpus}"]).model)[0].wvlp.state_dict()
    trained = load_file(str(out / "model" / "model.safetensors"))
    text = [k for k in trained if k.startswith("text_model.")]
    assert text and all(torch.equal(trained[k], initial[k]) for k in text)
    assert not torch.equal(trained["text_proj.weight"], initial["text_proj.weight"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["phase"] for e in history if "eval_zero_shot_top1" in e] == ["locked-text", "locked-text"]
    assert not [e for e in history if "itm_loss" in e or "mlm_loss" in e]
    written = cache.stat().st_mtime_ns
    main(run_args(corpus, out, *common, "training.max_steps=12") + ["--resume", str(out / "checkpoint-5")])
    assert [p.name for p in (out / "text-cache").iterdir()] == [cache.name] and cache.stat().st_mtime_ns == written


def test_gradient_accumulation_is_the_mean_of_micro_batch_gradients(corpus, tmp_path):
    from wvlp.train.collator import DistillationCollator

    overrides = [
        "training.max_steps=1",
        "training.gradient_accumulation_steps=4",
        "training.optim=sgd",
        "training.learning_rate=1.0",
        "training.lr_scheduler_type=constant",
        "training.max_grad_norm=0",
        "training.weight_decay=0",
        "training.save_steps=100",
        "model.config.itm_loss_weight=0",
        "run.alpha_warmup_steps=0",
        # Stochastic depth draws from the global RNG, which the Trainer and this loop advance differently.
        "model.config.vision_config={variant: lite0, image_size: 32, drop_connect_rate: 0.0}",
    ]
    config = load_config(TINY, [f"data.path={corpus}", f"training.output_dir={tmp_path / 'ga'}"] + overrides)
    seen = []
    from wvlp.train import run as run_module

    original = DistillationCollator.__call__

    def recording(self, rows):
        batch = original(self, rows)
        seen.append({k: v.clone() for k, v in batch.items()})
        return batch

    DistillationCollator.__call__ = recording
    try:
        set_seed(0)
        initial, _ = build_model_and_processor(config.model)
        initial_state = {k: v.clone() for k, v in initial.wvlp.state_dict().items()}
        run_module.train(config)
    finally:
        DistillationCollator.__call__ = original
    trained = load_file(str(tmp_path / "ga" / "model" / "model.safetensors"))
    assert len(seen) >= 4  # the data loader may collate one batch ahead
    seen = seen[:4]
    # Manual reference: the same model, the same four micro-batches, gradients averaged by hand.
    set_seed(0)
    model, _ = build_model_and_processor(config.model)
    for name, tensor in model.wvlp.state_dict().items():
        assert torch.equal(tensor, initial_state[name]), "model init is not reproducible"
    model.train()
    grads = None
    for batch in seen:
        model.zero_grad()
        model(**batch, alpha=model.config.pretraining_config.alpha).loss.backward()
        current = {n: p.grad.clone() for n, p in model.wvlp.named_parameters() if p.grad is not None}
        grads = current if grads is None else {n: grads[n] + current[n] for n in grads}
    for name, parameter in model.wvlp.named_parameters():
        if name in grads:
            expected = parameter.detach() - grads[name] / 4
            torch.testing.assert_close(trained[name], expected, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")


def test_wvlp_train_runs_the_same_training_as_train_run_py(corpus, tmp_path):
    """`wvlp train` calls the training function itself, with the same options: same seed, same weights."""
    from wvlp.cli import main as wvlp

    steps = ("training.max_steps=2", "training.save_steps=100")
    main(run_args(corpus, tmp_path / "script", *steps))
    wvlp(["train", *run_args(corpus, tmp_path / "cli", *steps)])
    script = load_file(str(tmp_path / "script" / "model" / "model.safetensors"))
    cli = load_file(str(tmp_path / "cli" / "model" / "model.safetensors"))
    assert script.keys() == cli.keys() and all(torch.equal(script[k], cli[k]) for k in script)
    wvlp(["train", *run_args(corpus, tmp_path / "cli", "training.max_steps=3"), "--resume"])
    assert json.loads((tmp_path / "cli" / "trainer_state.json").read_text())["global_step"] == 3


def test_zero_shot_learning_curve_reaches_every_logger_with_images_and_seconds(corpus, tmp_path):
    """The periodic zero-shot points go through Trainer.log (a logger callback sees them), on both curve axes."""
    from transformers import TrainerCallback

    from wvlp.train import run as run_module

    seen: list[dict] = []

    class Recorder(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs or {}))

    original = run_module.WVLPTrainer

    class RecordingTrainer(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Recorder())

    out = tmp_path / "curve"
    extra = ("training.max_steps=4", "run.zero_shot_every=2", "training.gradient_accumulation_steps=2")
    try:
        run_module.WVLPTrainer = RecordingTrainer
        main(run_args(corpus, out, *extra))
    finally:
        run_module.WVLPTrainer = original
    points = [e for e in seen if "eval_zero_shot_top1" in e]
    assert [p["images_seen"] for p in points] == [2 * 8 * 2, 4 * 8 * 2]  # steps x per-device batch x accumulation
    assert 0 < points[0]["train_seconds"] < points[1]["train_seconds"]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval_zero_shot_top1" in e] == [2, 4]
    assert (out / "plots" / "zero_shot_curve.png").is_file()


def test_learning_curve_marks_each_phase_change(tmp_path):
    from wvlp.train.plots import phase_changes, plot_zero_shot_curves

    assert plot_zero_shot_curves([{"loss": 1.0, "step": 1}], tmp_path) is None  # no zero-shot point: no figure
    history = [
        {"eval_zero_shot_top1": 0.1 * i, "images_seen": 64 * i, "train_seconds": 3.0 * i, "phase": p, "step": i}
        for i, p in enumerate(["locked-text"] * 3 + ["full"] * 2, start=1)
    ]
    assert [e["step"] for e in phase_changes(history)] == [4] and phase_changes(history[:3]) == []
    path = plot_zero_shot_curves(history, tmp_path)
    assert path == tmp_path / "zero_shot_curve.png" and path.stat().st_size > 0


def test_time_budget_stops_training_and_the_curve_reads_the_held_out_validation_images(corpus, tmp_path):
    out = tmp_path / "budget"
    extra = (
        "training.max_steps=100000",
        "run.max_train_seconds=3",
        "run.zero_shot_every=3",
        "data.validation_size=12",
    )
    main(run_args(corpus, out, *extra))
    state = json.loads((out / "trainer_state.json").read_text())
    points = [e for e in state["log_history"] if "eval_zero_shot_top1" in e]
    assert 1 <= state["global_step"] < 100000 and points[-1]["step"] == state["global_step"]
    assert points[-1]["train_seconds"] >= 3 and all(p["train_seconds"] < 3 for p in points[:-1])
    # 12 validation images: every accuracy is a whole number of twelfths.
    assert all(abs(p["eval_zero_shot_top1"] * 12 - round(p["eval_zero_shot_top1"] * 12)) < 1e-5 for p in points)
    with pytest.raises(ValueError, match="data.validation_size=1000: the train split has only"):
        main(run_args(corpus, tmp_path / "too-many", "data.validation_size=1000"))


def test_max_length_zero_is_the_corpus_token_length_quantile(processor):
    from wvlp.train.run import corpus_max_length

    texts = [" ".join(["shoe"] * n) for n in range(1, 21)]  # 1..20 words: 3..22 tokens with [CLS] and [SEP]
    lengths = sorted(len(ids) for ids in processor.tokenizer(texts)["input_ids"])
    assert lengths == list(range(3, 23))
    assert corpus_max_length(processor.tokenizer, texts, quantile=0.5, multiple=1) == 13  # numpy's linear median
    assert corpus_max_length(processor.tokenizer, texts) == 24  # p95 = 21.05 -> the next multiple of 8
    assert corpus_max_length(processor.tokenizer, texts[:5], multiple=8) == 8
