"""The model card of a release: `model_card.md` rendered from `wvlp-eval/1` evaluation JSONs (offline, no Hub calls).

    card = render_model_card(["out/eval/zero_shot.json"], model_id="org/wvlp", dataset_id="org/wvlp-descriptions")
    card.save("release/model/README.md")

The YAML header carries a `model-index` (one `EvalResult` per metric, values as fractions in [0, 1] exactly as the
JSON has them); the prose shows the same numbers in percent with the command that reproduces them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from wvlp.evaluation.schema import RANK_KEYS, RETRIEVAL_KEYS, load_eval, query_set_summaries, retrieval_modes

TEMPLATE_PATH = Path(__file__).with_name("model_card.md")
LICENSE = "apache-2.0"
PIPELINE_TAG = "zero-shot-image-classification"
BASE_TAGS = [
    "custom_code",
    "vision-language",
    "clip",
    "zero-shot-image-classification",
    "image-text-retrieval",
    "weak-supervision",
    "wvlp",
]
# Datasets whose images are 28x28 grey: the card then warns about the resolution.
LOW_RESOLUTION_DATASETS = {"fashion-mnist", "fashion_mnist", "mnist"}
# (metric key, the name the card and model-index give it) of the zero-shot sections of a wvlp-eval/1 JSON.
ZERO_SHOT_LABELS = (
    ("top1", "zero-shot top-1"),
    ("top5", "zero-shot top-5"),
    ("seen_top1", "zero-shot top-1, seen classes"),
    ("unseen_top1", "zero-shot top-1, unseen classes"),
    ("harmonic", "zero-shot harmonic mean (seen, unseen)"),
)
DESCRIPTION_LABELS = (
    ("top1", "zero-shot top-1, description ensembles"),
    ("top5", "zero-shot top-5, description ensembles"),
)
_RETRIEVAL_NAMES = {
    "i2t_r1": ("image-to-text", "recall@1", "image-to-text R@1"),
    "i2t_r5": ("image-to-text", "recall@5", "image-to-text R@5"),
    "i2t_r10": ("image-to-text", "recall@10", "image-to-text R@10"),
    "t2i_r1": ("text-to-image", "recall@1", "text-to-image R@1"),
    "t2i_r5": ("text-to-image", "recall@5", "text-to-image R@5"),
    "t2i_r10": ("text-to-image", "recall@10", "text-to-image R@10"),
    "rsum": ("image-text-retrieval", "rsum", "RSUM (sum of the six recalls)"),
}


def _dataset_label(data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(dataset_type, dataset_name, split) of an evaluation's `data` section."""
    name = str(data.get("name") or "unknown")
    return name.lower().replace(" ", "_"), name, str(data.get("split") or "test")


def eval_results(evals: Sequence[Mapping[str, Any]]) -> list[EvalResult]:
    """The `model-index` entries of the evaluations (fractions as in the JSON, rounded to 4 decimals)."""
    results: list[EvalResult] = []
    stages = {str((ev.get("model") or {}).get("stage") or "") for ev in evals}
    for ev in evals:
        dataset_type, dataset_name, split = _dataset_label(ev.get("data") or {})
        stage = str((ev.get("model") or {}).get("stage") or "")
        # Two evaluations of different stages on the same data would otherwise collide in model-index.
        suffix = f" ({stage})" if len(stages) > 1 and stage else ""
        metrics = ev["metrics"]

        def add(task_type: str, task_name: str, metric_type: str, metric_name: str, value: float | None) -> None:
            if value is None:
                return
            results.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name + suffix,
                    metric_value=round(float(value), 4),
                )
            )

        zs = metrics.get("zero_shot") or {}
        for key, label in ZERO_SHOT_LABELS:
            add(PIPELINE_TAG, "Zero-shot image classification", "accuracy", label, zs.get(key))
        zsd = metrics.get("zero_shot_descriptions") or {}
        for key, label in DESCRIPTION_LABELS:
            add(PIPELINE_TAG, "Zero-shot image classification", "accuracy", label, zsd.get(key))
        retrieval = metrics.get("retrieval") or {}
        for mode, how in retrieval_modes(retrieval):
            values = retrieval[mode]
            for key in RETRIEVAL_KEYS:
                task_type, metric_type, label = _RETRIEVAL_NAMES[key]
                add(
                    task_type,
                    f"Image-text retrieval ({how})",
                    metric_type,
                    f"{label}, {mode.upper()}",
                    values.get(key),
                )
        probe = metrics.get("linear_probe") or {}
        add(
            "image-classification",
            "Linear probe on frozen image features",
            "accuracy",
            "linear probe top-1",
            probe.get("top1"),
        )
    return results


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _rank(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _eval_section(ev: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows of one evaluation: a title, a data line, metric rows, per-class rows, the command."""
    model, data, metrics = ev.get("model") or {}, ev.get("data") or {}, ev["metrics"]
    _, dataset_name, split = _dataset_label(data)
    stage = model.get("stage")
    title = f"{dataset_name} ({split})" + (f", {stage} model" if stage else "")
    counts = [
        f"{data[k]:,} {label}"
        for k, label in (("num_images", "images"), ("num_texts", "texts"))
        if isinstance(data.get(k), int)
    ]
    details = [f"image size {model['image_size']} px"] if model.get("image_size") else []
    data_line = (
        f"Data: **{dataset_name}**, split `{split}`"
        + (f", {', '.join(counts + details)}" if counts or details else "")
        + "."
    )
    rows: list[tuple[str, str]] = []
    zs = metrics.get("zero_shot") or {}
    for key, label in ZERO_SHOT_LABELS:
        if zs.get(key) is not None:
            rows.append((label, _percent(zs[key])))
    zsd = metrics.get("zero_shot_descriptions") or {}
    for key, label in DESCRIPTION_LABELS:
        if zsd.get(key) is not None:
            rows.append((label, _percent(zsd[key])))
    retrieval = metrics.get("retrieval") or {}
    for mode, tag in retrieval_modes(retrieval):
        values = retrieval[mode]
        for key in RETRIEVAL_KEYS:
            if values.get(key) is not None:
                label = _RETRIEVAL_NAMES[key][2]
                rows.append((f"{label} ({tag})", f"{values[key]:.2f}" if key == "rsum" else _percent(values[key])))
        for key in RANK_KEYS:
            if values.get(key) is not None:
                rows.append((f"{key.replace('_', ' ')} ({tag})", _rank(values[key])))
    for q in query_set_summaries(metrics):
        rows.append(
            (
                f"query set `{q['name']}` ({q['count']} texts; {q['what']}): R@1 text->image / image->text "
                f"({q['mode']}; ITC)",
                f"{_percent(q['t2i_r1'])} / {_percent(q['i2t_r1'])} ({_percent(q['itc_t2i_r1'])} / "
                f"{_percent(q['itc_i2t_r1'])})",
            )
        )
        if q["zero_shot_top1"] is not None:
            rows.append(
                (f"query set `{q['name']}`: description-ensemble zero-shot top-1", _percent(q["zero_shot_top1"]))
            )
    probe = metrics.get("linear_probe") or {}
    if probe.get("top1") is not None:
        samples = probe.get("train_samples")
        rows.append(
            ("linear probe top-1" + (f" ({samples:,} training images)" if samples else ""), _percent(probe["top1"]))
        )
    per_class = [(name, _percent(value)) for name, value in (zs.get("per_class") or {}).items() if value is not None]
    return {
        "title": title,
        "data_line": data_line,
        "rows": rows,
        "per_class": per_class,
        "command": ev.get("command") or "wvlp evaluate --model <model> ...",
        "created": ev.get("created"),
        "model_path": model.get("path"),
    }


def _model_facts(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Architecture lines of the card from a saved `config.json` (defaults describe the embedded default)."""
    config = config or {}
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    if (
        vision.get("model_type", "wvlp_efficientnet_lite") in ("wvlp_efficientnet_lite", "efficientnet_lite")
        or "variant" in vision
    ):
        vision_tower = f"EfficientNet-{str(vision.get('variant', 'lite0')).capitalize()} (ImageNet-1k initialisation)"
    else:
        vision_tower = f"transformers `{vision.get('model_type')}` backbone"
    layers, hidden = text.get("num_hidden_layers"), text.get("hidden_size")
    text_tower = "BERT-style encoder initialised from all-MiniLM-L6-v2"
    if layers and hidden:
        text_tower += f" ({layers} layers, hidden size {hidden})"
    return {
        "vision_tower": vision_tower,
        "text_tower": text_tower,
        "fusion_layer": config.get("fusion_layer", "?"),
        "embed_dim": config.get("embed_dim", "?"),
        "image_size": vision.get("image_size", 96),
    }


def render_model_card(
    eval_jsons: Sequence[str | os.PathLike | Mapping[str, Any]],
    *,
    model_id: str,
    dataset_id: str | None = None,
    space_id: str | None = None,
    model_config: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    base_models: Sequence[str] = (),
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """The release's model card from evaluation JSONs (paths or dicts); `card.save(folder / "README.md")` writes it.

    `model_config` is the saved `config.json` (architecture lines), `training` a few `key: value` facts of the run.
    Never calls the Hub (no `validate()`, no push).
    """
    if not model_id or "/" not in model_id:
        raise ValueError(f"model_id={model_id!r} must be 'org/name'")
    template = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(f"model card template {template} is missing (it ships at the top of the repository)")
    evals = [load_eval(source) for source in eval_jsons]
    names = {_dataset_label(ev.get("data") or {})[1].lower() for ev in evals}
    datasets = [dataset_id] if dataset_id else []
    results = eval_results(evals)
    card_data = ModelCardData(
        model_name=model_id.split("/")[-1],
        license=LICENSE,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=list(BASE_TAGS),
        datasets=datasets or None,
        base_model=list(base_models) or None,
        metrics=sorted({r.metric_type for r in results}) or None,
        eval_results=results or None,
        language=["en"],
    )
    facts = _model_facts(model_config)
    low_resolution = not names or bool(names & LOW_RESOLUTION_DATASETS)
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_id=model_id,
        model_name=model_id.split("/")[-1],
        dataset_id=dataset_id,
        space_id=space_id,
        evals=[_eval_section(ev) for ev in evals],
        training=dict(training or {}),
        low_resolution=low_resolution,
        example_description="a sneaker is a low shoe with a rubber sole, laces and a padded collar",
        **facts,
    )


__all__ = ["eval_results", "render_model_card"]
