"""Fault battery of the command line: user errors are one line and exit status 2, bugs keep their traceback;
`wvlp evaluate` refuses a bad image count and output files it did not write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wvlp.cli import main
from wvlp.common.errors import USER_ERROR_STATUS, is_user_error, run_command
from wvlp.common.safe_io import RUN, UnsafeOutputError, check_writable
from wvlp.data.template_corpus import write_template_corpus

from tests.helpers import tree

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WVLP_TRACEBACK", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow  # a fresh interpreter
@pytest.mark.parametrize(
    "command, config, message",
    [
        (
            ["-m", "wvlp.cli", "describe"],
            "seed: abc\n",
            "wvlp describe: describe config bad.yaml: seed='abc': expected an integer",
        ),
        (["-m", "wvlp.cli", "describe"], "", "wvlp describe: describe config bad.yaml is empty"),
        (
            [str(ROOT / "train" / "run.py")],
            "training:\n  learning_rate: abc\n",
            "train/run.py: training.learning_rate='abc'",
        ),
        (["-m", "wvlp.cli", "train"], "data: [1, 2]\n", "wvlp train: "),
    ],
)
def test_user_errors_are_one_line_with_status_2(tmp_path, command, config, message):
    (tmp_path / "bad.yaml").write_text(config)
    proc = cli(*command, "--config", "bad.yaml", cwd=tmp_path)
    assert proc.returncode == USER_ERROR_STATUS, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]


def test_programming_errors_keep_their_traceback(tmp_path):
    def buggy():
        return {}["missing"]  # a KeyError is never the user's input

    with pytest.raises(KeyError):
        run_command("wvlp x", buggy)

    def library_value_error():
        import numpy as np

        return np.zeros(2).reshape(3)  # a ValueError raised inside a library, not a message of this project

    with pytest.raises(ValueError):
        run_command("wvlp x", library_value_error)
    (tmp_path / "mine.txt").write_text("a user's file")
    with pytest.raises(SystemExit) as exit_info:  # the project's own refusal is a user error
        run_command("wvlp x", check_writable, tmp_path, RUN, "training.output_dir")
    assert exit_info.value.code == USER_ERROR_STATUS


def test_is_user_error_looks_at_where_the_error_was_raised():
    try:
        from wvlp.train.config import load_config

        load_config(None, ["nonsense"])
    except ValueError as err:
        assert is_user_error(err)
    try:
        int("x")
    except ValueError as err:
        assert not is_user_error(err)  # raised in this test file, not in the project's code


@pytest.mark.parametrize("count", ["0", "-3"])
def test_evaluate_refuses_a_non_positive_image_count(saved_model, tmp_path, capsys, count):
    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=4)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(saved_model), "--data", str(corpus), "--max-images", count])
    assert exit_info.value.code == USER_ERROR_STATUS
    assert f"wvlp evaluate: max_images={count}: must be a positive integer" in capsys.readouterr().err


def test_evaluate_never_overwrites_files_it_did_not_write(saved_model, tmp_path):
    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=8)
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "paper.json").write_text('{"my": "numbers"}')
    (precious / "run.confusion.png").write_bytes(b"my own figure")
    (precious / "notes.txt").write_text("keep me")
    before = tree(precious)
    for out in ("paper.json", "run.json"):
        with pytest.raises(UnsafeOutputError, match="would be overwritten"):
            from wvlp.evaluation.run import evaluate_model

            evaluate_model(saved_model, corpus, tasks="zero-shot", itm_k=0, out=precious / out)
        assert tree(precious) == before
    evaluate_model(saved_model, corpus, tasks="zero-shot", itm_k=0, out=precious / "new.json")
    after = tree(precious)
    assert {k: v for k, v in after.items() if k in before} == before  # new files beside them, the old ones untouched
    assert json.loads((precious / "new.json").read_text())["schema"] == "wvlp-eval/1"
    evaluate_model(saved_model, corpus, tasks="zero-shot", itm_k=0, out=precious / "new.json")  # its own: rewritten
