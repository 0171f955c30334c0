"""`wvlp publish` against a recording stand-in for the Hub API, and the model card rendered from eval JSONs."""

import copy
import json

import pytest
from huggingface_hub import ModelCard

from wvlp.cli import main as wvlp
from wvlp.common.errors import USER_ERROR_STATUS
from wvlp.evaluation.schema import EvalFileError, load_eval
from wvlp.release.model_card import render_model_card

from tests.helpers import EVAL, TOKEN, cli_args, load_app

pytestmark = pytest.mark.slow  # `wvlp publish` checks every release in a fresh interpreter


def test_dry_run_stages_validates_and_uploads_nothing(release, hub, capsys):
    wvlp(cli_args(release, "--dry-run"))
    out = capsys.readouterr()
    assert hub.calls == []
    assert "dry run: nothing uploaded" in out.out and TOKEN not in out.out + out.err
    staging = release["staging"]
    for name in (
        "model.safetensors",
        "config.json",
        "modeling_wvlp.py",
        "configuration_wvlp.py",
        "processing_wvlp.py",
        "processor_config.json",
        "tokenizer.json",
        "README.md",
    ):
        assert (staging / "model" / name).is_file(), name
        assert f"    {name} (" in out.out
    assert "model repo test-org/wvlp <- " in out.out
    assert list((staging / "dataset" / "data").rglob("*.parquet")) and (staging / "dataset" / "README.md").is_file()
    space_readme = (staging / "space" / "README.md").read_text()
    assert "test-org/wvlp" in space_readme and "test-org/wvlp-descriptions" in space_readme
    assert json.loads((staging / "space" / "wvlp_space.json").read_text())["model"] == "test-org/wvlp"
    # The fresh-process remote-code load ran (and passed) on the staged model folder.
    assert "trust_remote_code in a fresh process (transformers_modules." in out.out
    assert "load_dataset: images: train 4, test 4" in out.out
    # A Space without the project installed searches the published dataset's test images.
    gallery = load_app()._gallery_from_dataset(str(staging / "dataset"), 3)
    from wvlp.data.fashion_mnist import CLASS_NAMES

    assert len(gallery.images) == 3 and set(gallery.captions) <= set(CLASS_NAMES)


def test_failed_upload_then_rerun_completes_the_release(release, hub, capsys):
    hub.fail_uploads = ["model"]
    with pytest.raises(SystemExit) as exit_info:
        wvlp(cli_args(release))
    assert exit_info.value.code == USER_ERROR_STATUS
    err = capsys.readouterr().err
    assert "model repo test-org/wvlp failed" in err and "model.safetensors" in err and "Rerun" in err
    assert TOKEN not in err
    assert set(hub.repos) == {"test-org/wvlp-descriptions", "test-org/wvlp"}  # the Space was not started
    assert hub.repos["test-org/wvlp"]["files"] == {}

    hub.calls.clear()
    wvlp(cli_args(release))
    out = capsys.readouterr().out
    assert TOKEN not in out and "published: " in out
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"] * 3
    assert all(c[2]["exist_ok"] for c in hub.calls if c[0] == "create_repo")
    assert [c[2]["repo_type"] for c in hub.calls if c[0] == "upload_folder"] == ["dataset", "model", "space"]
    assert hub.repos["test-org/wvlp-demo"]["type"] == "space"
    assert next(c for c in hub.calls if c[1] == "test-org/wvlp-demo")[2]["space_sdk"] == "gradio"
    staging = release["staging"]
    for kind, repo in (
        ("model", "test-org/wvlp"),
        ("dataset", "test-org/wvlp-descriptions"),
        ("space", "test-org/wvlp-demo"),
    ):
        staged = {str(p.relative_to(staging / kind)) for p in (staging / kind).rglob("*") if p.is_file()}
        assert set(hub.repos[repo]["files"]) == staged, kind
    assert {"app.py", "requirements.txt", "README.md", "wvlp_space.json"} <= set(
        hub.repos["test-org/wvlp-demo"]["files"]
    )
    card = hub.repos["test-org/wvlp"]["files"]["README.md"].decode()
    assert "0.6123" in card and "61.23%" in card


def test_missing_token_is_a_clear_error(release, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        wvlp(cli_args(release))
    assert "HF_TOKEN is not set" in capsys.readouterr().err


def test_bad_inputs_name_what_is_wrong(release, tmp_path, capsys, hub):
    broken = tmp_path / "model"
    broken.mkdir()
    for p in (release["run"] / "model").iterdir():
        if p.name != "modeling_wvlp.py":
            (broken / p.name).write_bytes(p.read_bytes())
    args = cli_args(release)
    args[args.index("--model") + 1] = str(broken)
    with pytest.raises(SystemExit):
        wvlp(args)
    assert "modeling_wvlp.py is missing" in capsys.readouterr().err
    args = cli_args(release, "--dry-run")
    args[args.index("--org") + 1] = "bad org!"
    with pytest.raises(SystemExit):
        wvlp(args)
    assert "--org 'bad org!'" in capsys.readouterr().err
    assert hub.calls == []


def test_model_card_yaml_carries_the_numbers(tmp_path):
    finetuned = copy.deepcopy(EVAL)
    finetuned["model"]["stage"] = "fine-tuned"
    finetuned["metrics"] = {"zero_shot": {"top1": 0.7001, "top5": 0.97}}
    card = render_model_card(
        [EVAL, finetuned],
        model_id="org/wvlp",
        dataset_id="org/wvlp-descriptions",
        space_id="org/wvlp-demo",
        model_config={"embed_dim": 256, "fusion_layer": 3},
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "zero-shot-image-classification" and "custom_code" in data["tags"]
    assert data["datasets"] == ["org/wvlp-descriptions"]
    values = {(r.metric_name, r.dataset_name): r.metric_value for r in loaded.data.eval_results}
    assert values[("zero-shot top-1 (pre-trained)", "fashion-mnist")] == 0.6123
    assert values[("zero-shot top-1 (fine-tuned)", "fashion-mnist")] == 0.7001
    assert values[("image-to-text R@1, ITM (pre-trained)", "fashion-mnist")] == 0.35
    assert values[("RSUM (sum of the six recalls), ITC (pre-trained)", "fashion-mnist")] == 3.17
    assert values[("linear probe top-1 (pre-trained)", "fashion-mnist")] == 0.8344
    text = loaded.text
    for fragment in (
        "61.23%",
        "83.44%",
        "T-shirt/top | 70.10%",
        EVAL["command"],
        "trust_remote_code=True",
        "LoRA",
        "hallucination",
        "28x28",
        "no image-caption pair",
    ):
        assert fragment in text, fragment


def test_model_card_names_every_retrieval_mode_and_query_set(tmp_path):
    record = copy.deepcopy(EVAL)
    retrieval = record["metrics"]["retrieval"]
    retrieval["fused"] = {**retrieval["itc"], "t2i_r1": 0.4567}
    retrieval["fusion"] = {
        "i2t": {"itc_weight": 1.0, "k": 4},
        "t2i": {"itc_weight": 0.75, "k": 8},
        "chosen_on": {"split": "train", "num_images": 1000, "num_texts": 300, "tried": {}},
    }
    retrieval["default"] = "fused"
    cupl = {"itm_k": 16, "itc": dict(retrieval["itc"]), "default": "itc"}
    cupl["itc"]["t2i_r1"] = 0.1234
    record["metrics"]["query_sets"] = {
        "cupl": {
            "source": {"what": "CuPL GPT-3 descriptions", "llm": ["GPT-3 (CuPL)"], "count": 908},
            "retrieval": cupl,
            "zero_shot_descriptions": {"top1": 0.4321, "top5": 0.9},
        },
        "skipped": {"cross-llm": "no queries config"},
    }
    load_eval(record)
    card = render_model_card([record], model_id="org/wvlp", dataset_id="org/d", space_id="org/s", model_config={})
    text = card.text
    fused_label = "ITC+ITM fused (i2t w=1 k=4; t2i w=0.75 k=8; chosen on train), default"
    assert f"text-to-image R@1 ({fused_label}) | 45.67%" in text
    rows = [
        text.index(f"text-to-image R@1 ({mode})")
        for mode in (fused_label, "ITC", "ITM-only re-rank of the top 16 (ALBEF)")
    ]
    assert rows == sorted(rows)  # the default first, then ITC, then ALBEF's ITM-only re-rank
    assert "query set `cupl` (908 texts; CuPL GPT-3 descriptions; written by GPT-3 (CuPL))" in text
    assert "12.34%" in text and "43.21%" in text
    bad = copy.deepcopy(record)
    del bad["metrics"]["query_sets"]["cupl"]["source"]
    with pytest.raises(EvalFileError, match=r"metrics\.query_sets\.cupl must be a mapping with a 'source'"):
        load_eval(bad)
    bad = copy.deepcopy(record)
    bad["metrics"]["query_sets"]["cupl"]["retrieval"]["default"] = "fused"
    with pytest.raises(EvalFileError, match=r"query_sets\.cupl\.retrieval\.default is 'fused'"):
        load_eval(bad)


def test_eval_json_errors_name_the_field(tmp_path):
    bad = copy.deepcopy(EVAL)
    bad["metrics"]["zero_shot"]["top1"] = 61.23  # percent instead of a fraction
    with pytest.raises(EvalFileError, match=r"metrics\.zero_shot\.top1=61\.23"):
        load_eval(bad)
    with pytest.raises(EvalFileError, match="schema"):
        load_eval({**EVAL, "schema": "other/2"})
    with pytest.raises(EvalFileError, match="does not exist"):
        load_eval(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(EvalFileError, match="not valid JSON"):
        load_eval(tmp_path / "broken.json")
