"""Pre-training faults: bad config values, corrupt checkpoints, a full disk, NaN losses, foreign output folders."""

import errno
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import transformers.modeling_utils
from safetensors.torch import load_file

from wvlp.common.safe_io import MARKER, UnsafeOutputError
from wvlp.data.holdout import names_by_index, resolve_holdout
from wvlp.data.template_corpus import write_template_corpus
from wvlp.modeling import WVLPForPreTraining
from wvlp.train.config import load_config
from wvlp.train.run import train
from wvlp.train.trainer import NonFiniteLossError

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "train" / "configs" / "tiny.yaml"
# Four steps with checkpoints at 2 and 4: the smallest run with an older checkpoint to fall back to.
SHORT = ["training.max_steps=4", "training.save_steps=2", "training.logging_steps=1", "data.max_eval_samples=8"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_template_corpus(tmp_path_factory.mktemp("corpus") / "corpus", images_per_split=32)


def short_config(corpus: Path, out: Path, *extra: str):
    return load_config(TINY, [f"data.path={corpus}", f"training.output_dir={out}", *SHORT, *extra])


@pytest.fixture(scope="module")
def base_run(corpus, tmp_path_factory) -> Path:
    """A finished short run (checkpoint-2 and checkpoint-4); tests work on copies of it."""
    out = tmp_path_factory.mktemp("base") / "run"
    train(short_config(corpus, out))
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    return out


def copy_run(base_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def assert_same_tensors(a: Path, b: Path) -> None:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], atol=1e-6, rtol=0, msg=key)


def snapshot(folder: Path) -> dict[str, str | None]:
    """Every path under `folder` with the SHA-256 of its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


# --- A. config validation up front ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("training.seed=abc", "training.seed='abc': expected an integer"),
        ("data.mlm_probability=2.0", "data.mlm_probability=2.0: must be in [0, 1)"),
        ("training.learning_rate=0", "training.learning_rate=0: must be > 0"),
        ("training.learning_rate=abc", "training.learning_rate='abc': expected a number"),
        ("training.per_device_train_batch_size=0", "training.per_device_train_batch_size=0: must be >= 1"),
        ("training.gradient_accumulation_steps=0", "training.gradient_accumulation_steps=0: must be >= 1"),
        ("training.weight_decay=-0.1", "training.weight_decay=-0.1: must be >= 0"),
        ("training.max_steps=0", "training.max_steps=0: must be >= 1"),
        ("data.max_length=1", "data.max_length=1: must be >= 2"),
        (
            "lora.towers=[text, eyes]",
            "lora.towers=['text', 'eyes']: item 'eyes': expected one of text, fusion, vision",
        ),
        (
            "run.zero_shot_templates=[a photo]",
            "run.zero_shot_templates=['a photo']: item 'a photo': must be a template",
        ),
        ("data=[1, 2]", "data=[1, 2]: expected a mapping of data.* keys"),
        ("run=3", "run=3: expected a mapping of run.* keys"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field_and_value(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(TINY, [override])


def test_a_config_file_that_is_a_list_is_refused_naming_it(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- model\n- data\n")
    with pytest.raises(ValueError, match=re.escape(f"config file {path}: expected a mapping of sections")):
        load_config(path)
    path.write_text("data: [1, 2]\n")
    with pytest.raises(ValueError, match=re.escape("data=[1, 2]: expected a mapping")):
        load_config(path)


def test_yaml_11_exponent_floats_are_read_as_numbers(tmp_path):
    # YAML 1.1 reads 1e-4 and 1e6 (no dot) as strings.
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  learning_rate: 1e-4\n  num_train_epochs: 1e1\n  weight_decay: 2e-2\n")
    training = load_config(path).training
    assert (training.learning_rate, training.num_train_epochs, training.weight_decay) == (1e-4, 10.0, 0.02)
    assert all(type(v) is float for v in (training.learning_rate, training.num_train_epochs, training.weight_decay))
    assert load_config(TINY, ["training.max_steps=1e3"]).training.max_steps == 1000


def test_a_single_holdout_class_name_holds_out_exactly_that_class(corpus, tmp_path):
    config = short_config(corpus, tmp_path / "run", "data.holdout_classes=Bag", "data.max_eval_samples=32")
    assert config.data.holdout_classes == ["Bag"]
    import datasets

    names = datasets.load_dataset(str(corpus), "images")["train"].features["label"].names
    assert resolve_holdout(names_by_index(names), config.data.holdout_classes) == {names.index("Bag")}
    metrics = train(config)
    assert (
        "zero_shot_unseen_top1" in metrics["zero_shot_after"] and "zero_shot_seen_top1" in metrics["zero_shot_after"]
    )


# --- B. a corrupt newest checkpoint does not block --resume --------------------------------------------------------


@pytest.mark.parametrize("broken", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_b_resume_falls_back_to_the_newest_intact_checkpoint(corpus, base_run, tmp_path, broken):
    out = copy_run(base_run, tmp_path)
    truncate(out / "checkpoint-4" / broken)
    with pytest.warns(UserWarning, match=re.escape(str(out / "checkpoint-4" / broken)) + ".*truncated or corrupt"):
        train(short_config(corpus, out), resume=True)
    # Resumed from checkpoint-2: steps 3 and 4 were trained again, reproducing the uninterrupted run exactly.
    assert_same_tensors(out / "checkpoint-4" / "model.safetensors", base_run / "checkpoint-4" / "model.safetensors")
    json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]


def test_b_resume_with_every_checkpoint_broken_names_the_files(corpus, base_run, tmp_path):
    out = copy_run(base_run, tmp_path)
    truncate(out / "checkpoint-4" / "model.safetensors")
    truncate(out / "checkpoint-2" / "optimizer.pt")
    with pytest.raises(ValueError, match=re.escape(str(out / "checkpoint-4" / "model.safetensors"))) as raised:
        train(short_config(corpus, out), resume=True)
    assert str(out / "checkpoint-2" / "optimizer.pt") in str(raised.value)


# --- C. a full disk while checkpointing, and the NaN guard ---------------------------------------------------------


def fail_when_writing_checkpoint_4(monkeypatch, target, name: str, error: Exception) -> None:
    """Makes `target.name` (a file writer) raise `error` for files of checkpoint-4, as a full disk would."""
    original = getattr(target, name)

    def writer(obj, path, *args, **kwargs):
        if "checkpoint-4" in str(path):
            raise error
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(target, name, writer)


@pytest.mark.parametrize(
    "target, name, error, disk",
    [
        (
            torch,
            "save",
            RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1472 vs 1360"),
            "the disk may be full",
        ),
        (
            transformers.modeling_utils,
            "safe_save_file",
            OSError(errno.ENOSPC, "No space left on device"),
            "the disk is full (ENOSPC)",
        ),
    ],
)
def test_c_full_disk_names_the_checkpoint_and_keeps_the_previous_one(
    corpus, base_run, tmp_path, monkeypatch, target, name, error, disk
):
    out = tmp_path / "run"
    fail_when_writing_checkpoint_4(monkeypatch, target, name, error)
    with pytest.raises(RuntimeError) as raised:
        train(short_config(corpus, out))
    message = str(raised.value)
    assert f"writing checkpoint {out / 'checkpoint-4'} failed: {disk}" in message, message
    assert f"{out / 'checkpoint-2'} is intact" in message, message
    assert not (out / "checkpoint-4").exists() and not (out / ".staging").exists()
    assert_same_tensors(out / "checkpoint-2" / "model.safetensors", base_run / "checkpoint-2" / "model.safetensors")
    torch.load(out / "checkpoint-2" / "optimizer.pt", weights_only=True)


def nan_loss_from_call(monkeypatch, first_bad: int) -> None:
    """Makes the pre-training loss NaN from the `first_bad`-th training forward on (1-based)."""
    original, calls = WVLPForPreTraining.forward, [0]

    def forward(self, *args, **kwargs):
        outputs = original(self, *args, **kwargs)
        if self.training:
            calls[0] += 1
            if calls[0] >= first_bad:
                outputs.loss = outputs.loss * float("nan")
        return outputs

    monkeypatch.setattr(WVLPForPreTraining, "forward", forward)


def test_c_nan_guard_names_the_newest_checkpoint(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    nan_loss_from_call(monkeypatch, 4)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3") as raised:
        train(short_config(corpus, out))
    assert f"the checkpoint {out / 'checkpoint-2'} is intact" in str(raised.value)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


def test_c_nan_guard_before_any_checkpoint_says_none_was_saved(corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    nan_loss_from_call(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError, match=re.escape(f"no checkpoint of this run was saved in {out} yet")):
        train(short_config(corpus, out))
    assert not list(out.glob("checkpoint-*"))


# --- D. the output folder ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resume", [None, True])
def test_d_a_folder_of_other_files_is_refused_untouched(corpus, tmp_path, resume):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("my notes\n")
    (out / "sub" / "data.bin").write_bytes(bytes(range(256)) * 64)
    (out / "checkpoint-7").mkdir()  # looks like a run's, but the folder is not one
    before = snapshot(out)
    with pytest.raises(UnsafeOutputError, match=re.escape(str(out))):
        train(short_config(corpus, out), resume=resume)
    # Refused before the corpus is read: a missing corpus is not what stops it.
    with pytest.raises(UnsafeOutputError, match="training.output_dir"):
        train(short_config(tmp_path / "no-corpus", out), resume=resume)
    assert snapshot(out) == before


def test_d_a_rerun_into_this_projects_run_folder_still_works(corpus, base_run, tmp_path):
    out = copy_run(base_run, tmp_path)
    train(short_config(corpus, out))
    assert json.loads((out / MARKER).read_text())["kind"] == "run"
    (out / MARKER).unlink()  # a run folder written before the marker existed: recognised by its layout
    (out / "checkpoint-4").rename(out / "checkpoint-9")
    train(short_config(corpus, out))
    assert (out / MARKER).is_file() and (out / "checkpoint-4").is_dir()
