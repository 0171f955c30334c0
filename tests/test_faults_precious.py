"""A user's folder, full of their own files (some named like the project's), given to every command that writes:
`wvlp describe`, `train/run.py` (through `wvlp train`), `wvlp evaluate` and `wvlp publish` (dry run and upload).
Not one byte of it may be removed or changed."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from wvlp.cli import main
from wvlp.common.errors import USER_ERROR_STATUS

from tests.helpers import cli_args, make_images, tree
from tests.openai_server import OpenAIStubServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def precious(tmp_path) -> Path:
    """A folder of someone's work; README.md, data/, stats.json, metrics.json and checkpoint-1/ are also names the
    project writes, so only a refusal keeps them (a layout check that looked at names alone would take it)."""
    folder = tmp_path / "precious"
    for name, content in {
        "notes.txt": b"years of work",
        "README.md": b"# my project",
        "stats.json": b'{"mine": 1}',
        "metrics.json": b'{"accuracy": 0.99}',
        "data/table.csv": b"a,b\n1,2\n",
        "checkpoint-1/optimizer.pt": b"\x00" * 64,
        "model/model.safetensors": np.random.default_rng(0).bytes(256),
        "model/config.json": b'{"mine": true}',
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def refused(args: list[str], capsys) -> str:
    """stderr of a `wvlp` command that must stop with the user-error status."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == USER_ERROR_STATUS
    return capsys.readouterr().err


def test_describe_leaves_a_precious_output_folder_alone(tmp_path, precious, capsys):
    images = make_images(tmp_path / "images", {"boot": 1, "coat": 1})
    before = tree(precious)
    with OpenAIStubServer() as server:
        config = tmp_path / "describe.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "source": {"type": "imagefolder", "root": str(images)},
                    "samples_per_prompt": 1,
                    "llm": {"type": "server", "base_url": server.base_url},
                }
            )
        )
        err = refused(["describe", "--config", str(config), "--output", str(precious)], capsys)
        assert server.requests == []
    assert f"output {precious} holds files this project did not write" in err
    assert tree(precious) == before


def test_training_leaves_a_precious_output_folder_alone(tmp_path, precious, capsys):
    from wvlp.data.template_corpus import write_template_corpus

    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=8)
    before = tree(precious)
    for resume in ([], ["--resume"]):
        err = refused(
            [
                "train",
                "--config",
                str(ROOT / "train" / "configs" / "tiny.yaml"),
                "--set",
                f"data.path={corpus}",
                "--set",
                f"training.output_dir={precious}",
                *resume,
            ],
            capsys,
        )
        assert str(precious) in err and "training.output_dir" in err
        assert tree(precious) == before


def test_evaluate_leaves_a_precious_folder_alone(tmp_path, precious, capsys, release):
    before = tree(precious)
    model, corpus = release["run"] / "model", release["corpus"]
    for out in ("stats.json", "metrics.json", "model/config.json"):
        err = refused(
            [
                "evaluate",
                "--model",
                str(model),
                "--data",
                str(corpus),
                "--task",
                "zero-shot",
                "--out",
                str(precious / out),
            ],
            capsys,
        )
        assert "would be overwritten" in err
    main(
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(corpus),
            "--task",
            "zero-shot",
            "--out",
            str(precious / "eval" / "zero_shot.json"),
        ]
    )
    after = tree(precious)
    assert {name: after[name] for name in before} == before  # only new files, in a new subfolder
    assert set(after) - set(before) <= {
        "eval/zero_shot.json",
        "eval/zero_shot.confusion.json",
        "eval/zero_shot.confusion.png",
    }
    assert json.loads((precious / "eval" / "zero_shot.json").read_text())["schema"] == "wvlp-eval/1"


@pytest.mark.parametrize("mode", ["dry-run", "upload"])
def test_publish_leaves_a_precious_staging_folder_alone(precious, capsys, release, hub, mode):
    before = tree(precious)
    args = cli_args(release, *(["--dry-run"] if mode == "dry-run" else []))
    args[args.index("--staging") + 1] = str(precious)
    err = refused(args, capsys)
    assert f"--staging {precious} holds files this project did not write" in err
    assert tree(precious) == before and hub.calls == []
    assert not precious.with_name("precious.partial").exists()
