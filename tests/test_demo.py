"""The main job end to end at CI scale (`wvlp demo --scale ci`): real SmolLM2 descriptions, real packaged towers.

The same code path as `make demo`; only the sizes differ (see `app/demo.py` SCALES). It is also the end-to-end
training check of issue 4: `fashion-mnist.yaml` (with the CI step budget) must lift zero-shot accuracy on
Fashion-MNIST test images by at least 20 points.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "wvlp.cli", "demo", "--scale", "ci", "--output", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    (out / "demo.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_training_lifts_zero_shot_by_20_points(demo_dir):
    out, _ = demo_dir
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    before, after = metrics["zero_shot_before"]["zero_shot_top1"], metrics["zero_shot_after"]["zero_shot_top1"]
    print(f"zero-shot top-1 before {before:.3f}, after {after:.3f}")
    assert after - before >= 0.20
    state = json.loads((out / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 40  # the CI budget of fashion-mnist.yaml: 30 locked-text steps, then 10 full
    history = state["log_history"]
    assert [e["phase"] for e in history if "eval_zero_shot_top1" in e] == ["locked-text", "full"]
    assert min(e["step"] for e in history if "itm_loss" in e) > 30, "ITM only in the full steps"
    assert len(list((out / "run" / "text-cache").iterdir())) == 1


def test_corpus_is_real_llm_output(demo_dir):
    out, _ = demo_dir
    stats = json.loads((out / "corpus" / "stats.json").read_text())
    raw = [json.loads(line) for line in (out / "corpus.generations.jsonl").read_text().splitlines()]
    assert len(raw) == 90  # 10 classes x 9 prompts x 1 sample at CI scale
    assert {r["llm"] for r in raw} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert {r["prompting"] for r in raw} == {"chat"}
    assert stats["kept"] >= 45


def test_evaluation_and_report(demo_dir):
    out, stdout = demo_dir
    zero_shot = json.loads((out / "eval" / "zero_shot.json").read_text())
    retrieval = json.loads((out / "eval" / "retrieval.json").read_text())
    assert zero_shot["schema"] == retrieval["schema"] == "wvlp-eval/1"
    assert zero_shot["data"]["num_images"] == 1000 and retrieval["data"]["num_images"] == 300
    assert 0.2 < zero_shot["metrics"]["zero_shot"]["top1"] <= 1.0
    assert zero_shot["metrics"]["linear_probe"]["train_samples"] == 2000
    ranking = retrieval["metrics"]["retrieval"]
    assert set(ranking) >= {"itc", "itm", "fused"} and ranking["itm_k"] == 8
    assert ranking["default"] == "fused" and ranking["fusion"]["chosen_on"]["split"] == "train"
    assert {"same-llm-heldout", "cupl"} <= set(retrieval["metrics"]["query_sets"])  # CuPL held out of knowledge
    report = (out / "report" / "report.md").read_text()
    assert report.index("zero_shot_curve.png") < report.index("loss_")  # the learning curve leads the figures
    for png in ("confusion", "retrieval_examples", "loss_"):
        assert any(png in p.name for p in (out / "report").glob("*.png")), png
    for name in ("zero-shot top-1", "linear probe", "text->image R@1/5/10", "query set cupl"):
        assert name in report and name in stdout  # the same table is printed at the end and written
    assert "## The descriptions" in report and "| **all** |" in report and "- **Ankle boot**: “" in report


def test_release_folders(demo_dir):
    out, _ = demo_dir
    release = out / "release"
    card = (release / "model" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers" and meta["model-index"]
    assert (release / "model" / "config.json").is_file() and (release / "model" / "modeling_wvlp.py").is_file()
    assert list((release / "dataset").rglob("*.parquet"))
    assert (release / "space" / "app.py").is_file()
