"""`wvlp evaluate` end to end: a tiny random model saved with save_pretrained, a tiny template corpus -> eval JSON."""

import json

import pytest
import torch

from wvlp.cli import main
from wvlp.data.template_corpus import write_template_corpus
from wvlp.evaluation.schema import RANK_KEYS
from wvlp.evaluation.schema import RETRIEVAL_KEYS as SCHEMA_RETRIEVAL_KEYS

RETRIEVAL_KEYS = {*SCHEMA_RETRIEVAL_KEYS, *RANK_KEYS}


def test_wvlp_evaluate_writes_the_eval_json(saved_model, tmp_path, capsys):
    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=20)
    out = tmp_path / "eval" / "fashion-mnist.json"
    main(
        [
            "evaluate",
            "--model",
            str(saved_model),
            "--task",
            "all",
            "--data",
            str(corpus),
            "--itm-k",
            "4",
            "--holdout-classes",
            "Bag,Sandal",
            "--out",
            str(out),
        ]
    )
    record = json.loads(out.read_text())
    assert set(record) == {"schema", "model", "data", "command", "created", "metrics"}
    assert record["schema"] == "wvlp-eval/1"
    assert record["model"]["path"] == str(saved_model) and record["model"]["stage"] == "pre-trained"
    assert record["model"]["image_size"] == 32 and len(record["model"]["config_sha256"]) == 64
    data = record["data"]
    assert data["name"] == "fashion-mnist" and data["split"] == "test" and data["num_images"] == 20
    assert data["num_texts"] > 0
    assert data["classnames_file"] == "evaluation/prompts/fashion_mnist_classnames.txt"
    assert data["templates_file"] == "evaluation/prompts/templates_v1.txt"
    assert (
        record["command"].startswith("wvlp evaluate --model ") and "--holdout-classes Bag,Sandal" in record["command"]
    )
    metrics = record["metrics"]
    assert set(metrics) == {"zero_shot", "zero_shot_descriptions", "retrieval", "linear_probe", "query_sets"}
    query_sets = metrics["query_sets"]
    assert set(query_sets) == {"same-llm-heldout", "cupl", "skipped"} and set(query_sets["skipped"]) == {"cross-llm"}
    # The held-out set is the main block's queries; CuPL covers the nine mapped classes present in the images.
    assert query_sets["same-llm-heldout"]["retrieval"]["itc"] == metrics["retrieval"]["itc"]
    assert query_sets["same-llm-heldout"]["source"]["count"] == data["num_texts"]
    assert query_sets["cupl"]["source"]["llm"] == ["GPT-3 (CuPL)"] and query_sets["cupl"]["source"]["count"] > 100
    assert set(query_sets["cupl"]["retrieval"]) >= {"itc", "itm", "fused", "default"}
    zero_shot = metrics["zero_shot"]
    assert set(zero_shot) == {"top1", "top5", "per_class", "seen_top1", "unseen_top1", "harmonic"}
    assert list(zero_shot["per_class"])[0] == "T-shirt/top" and len(zero_shot["per_class"]) == 10
    assert set(metrics["zero_shot_descriptions"]) == {"top1", "top5"}
    retrieval = metrics["retrieval"]
    assert retrieval["itm_k"] == 4 and set(retrieval["itc"]) == set(retrieval["itm"]) == RETRIEVAL_KEYS
    # The fusion is chosen on the train split (the corpus has no validation split), never on the test split.
    assert retrieval["default"] == "fused" and set(retrieval["fused"]) == RETRIEVAL_KEYS
    chosen_on = retrieval["fusion"]["chosen_on"]
    assert chosen_on["split"] == "train" and chosen_on["num_images"] == 20
    for direction in ("i2t", "t2i"):
        tried = {(t["itc_weight"], t["k"]): t["r1"] for t in chosen_on["tried"][direction]}
        fusion = retrieval["fusion"][direction]
        assert set(tried) == {(w, 4) for w in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)}
        assert tried[fusion["itc_weight"], fusion["k"]] >= tried[1.0, 4]
    assert set(metrics["linear_probe"]) == {"top1", "train_samples"} and metrics["linear_probe"]["train_samples"] == 20
    fractions = [
        zero_shot["top1"],
        zero_shot["top5"],
        zero_shot["seen_top1"],
        zero_shot["unseen_top1"],
        *(v for k, v in retrieval["itc"].items() if "_r" in k and "rank" not in k),
    ]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    for side in ("confusion.json", "confusion.png", "retrieval_examples.json", "retrieval_examples.png"):
        assert (out.parent / f"fashion-mnist.{side}").stat().st_size > 0
    assert '"zero_shot"' in capsys.readouterr().out

    # ITC only, one task: the other metrics are absent
    only = tmp_path / "retrieval.json"
    main(
        [
            "evaluate",
            "--model",
            str(saved_model),
            "--task",
            "retrieval",
            "--data",
            str(corpus),
            "--itm-k",
            "0",
            "--max-images",
            "8",
            "--out",
            str(only),
        ]
    )
    record = json.loads(only.read_text())
    assert set(record["metrics"]) == {"retrieval", "query_sets"} and "itm" not in record["metrics"]["retrieval"]
    assert "itm" not in record["metrics"]["query_sets"]["cupl"]["retrieval"]
    assert record["metrics"]["retrieval"]["default"] == "itc" and "fused" not in record["metrics"]["retrieval"]
    assert record["data"]["num_images"] == 8 and record["data"]["templates_file"] is None


def test_evaluate_model_accepts_a_loaded_model(saved_model, tmp_path):
    from wvlp.evaluation.data import EvalData
    from wvlp.evaluation.run import evaluate_model, load_model

    model, processor = load_model(saved_model)
    images = [torch.rand(3, 32, 32) for _ in range(4)]
    data = EvalData(
        "toy",
        "test",
        images,
        ["a red shoe", "a blue bag", "a bag", "a coat", "a hat"],
        image_groups=[0, 1, 2, 3],
        text_groups=[0, 1, 1, 2, 3],
    )
    record = evaluate_model(model, data, processor=processor, itm_k=2)
    assert set(record["metrics"]) == {"retrieval"}  # no labels: zero-shot and probe skipped under "all"
    assert record["model"]["config_sha256"] == evaluate_model(saved_model, data, itm_k=0)["model"]["config_sha256"]
    assert record["metrics"]["retrieval"]["default"] == "itc"  # in-memory data: no other split to choose a fusion on
    fused = evaluate_model(model, data, processor=processor, itm_k=2, fusion_data=data)["metrics"]["retrieval"]
    assert fused["default"] == "fused" and fused["fusion"]["chosen_on"]["split"] == "test"
    with pytest.raises(ValueError, match="is the evaluated split"):
        evaluate_model(saved_model, tmp_path, itm_k=2, fusion_data="test")
    with pytest.raises(ValueError, match="names a split, but data is in memory"):
        evaluate_model(model, data, processor=processor, itm_k=2, fusion_data="train")
    with pytest.raises(ValueError, match="needs class labels"):
        evaluate_model(model, data, processor=processor, tasks="zero-shot")
    with pytest.raises(ValueError, match="needs its processor"):
        evaluate_model(model, data)


def test_fusion_is_chosen_on_the_cross_llm_queries_when_the_corpus_has_them(saved_model, tmp_path):
    from wvlp.evaluation.run import evaluate_model

    corpus = write_template_corpus(tmp_path / "corpus", images_per_split=20, cross_llm=True)
    record = evaluate_model(saved_model, corpus, tasks="retrieval", itm_k=4)
    retrieval, query_sets = record["metrics"]["retrieval"], record["metrics"]["query_sets"]
    chosen_on = retrieval["fusion"]["chosen_on"]
    # Text no model trained on, on train images; without cross-LLM queries it is the train descriptions.
    assert chosen_on["split"] == "train" and chosen_on["texts"] == "queries/cross_llm (never trained on)"
    # one query per class, of the classes the first 20 train / test images show
    assert 8 <= chosen_on["num_texts"] <= 10 and 8 <= query_sets["cross-llm"]["source"]["count"] <= 10
    assert set(query_sets) == {"same-llm-heldout", "cross-llm", "cupl"}
    plain = write_template_corpus(tmp_path / "plain", images_per_split=20)
    texts = evaluate_model(saved_model, plain, tasks="retrieval", itm_k=4)["metrics"]["retrieval"]["fusion"]
    assert texts["chosen_on"]["texts"].startswith("descriptions/train")
