"""One evaluation run: model + data -> zero-shot, retrieval, linear probe -> the `wvlp-eval/1` JSON (+ plots).

    wvlp evaluate --model out/run/model --task all --data out/fashion-mnist/corpus --out out/eval/fashion-mnist.json

`evaluate_model` is the importable equivalent (the demo calls it with an already-loaded model and processor).
"""

import dataclasses
import datetime
import hashlib
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from wvlp.common.safe_io import UnsafeOutputError, atomic_write_text
from wvlp.data.holdout import names_by_index, resolve_holdout
from wvlp.evaluation.data import EvalData, MissingSplitError, load_eval_data
from wvlp.evaluation.distributed import distributed_map
from wvlp.evaluation.features import image_embeddings, itm_pair_scores, text_embeddings, tokenize
from wvlp.evaluation.linear_probe import linear_probe
from wvlp.evaluation.prompt_files import DEFAULT_TEMPLATES, classnames_for, display_path, load_templates
from wvlp.evaluation.query_sets import corpus_query_sets
from wvlp.evaluation.retrieval import Fusion, RetrievalResult, choose_fusion, evaluate_retrieval, retrieval_examples
from wvlp.evaluation.schema import SCHEMA, load_eval
from wvlp.evaluation.zero_shot import build_zero_shot_classifier, class_ensembles, zero_shot_metrics
from wvlp.modeling import WVLPModel, WVLPProcessor
from wvlp.modeling.loading import load_wvlp

TASKS = ("zero-shot", "retrieval", "linear-probe")
# Where `fusion_data="auto"` looks for the queries that choose the ITM fusion, in order; never the evaluated split.
FUSION_SPLITS = ("validation", "val", "train")
FUSION_MAX_IMAGES = 1000


def load_model(path: str | Path) -> tuple[WVLPModel, WVLPProcessor]:
    """A saved WVLPModel (or the student of a saved WVLPForPreTraining) and its processor, in eval mode."""
    model = load_wvlp(path, for_pretraining=False)
    return model.eval(), WVLPProcessor.from_pretrained(path)


def config_sha256(model: WVLPModel) -> str:
    """SHA-256 of the model's full config as sorted JSON (same value for the same config, saved or in memory)."""
    config = model.config.to_dict()
    for volatile in ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        config.pop(volatile, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """`"all"`, `"zero-shot,retrieval"` or a list -> the task names, in the fixed order of TASKS."""
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    if "all" in names:
        return list(TASKS)
    unknown = sorted(set(names) - set(TASKS))
    if unknown or not names:
        raise ValueError(f"task {unknown or names}: choose from {list(TASKS)} or 'all'")
    return [t for t in TASKS if t in names]


@torch.no_grad()
def encode_images(
    model: WVLPModel,
    processor: WVLPProcessor,
    images: Sequence[Any],
    batch_size: int = 128,
    return_tokens: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Normalised embeddings (N, D) and optionally image tokens (N, T, C), sharded over ranks when distributed."""
    dim, token_shape = model.config.embed_dim, []

    def encode(indices: list[int]) -> torch.Tensor:
        batch = [images[i] for i in indices]
        if not return_tokens:
            return image_embeddings(model, processor, batch, batch_size=len(batch))
        embeds, tokens = image_embeddings(model, processor, batch, batch_size=len(batch), return_tokens=True)
        token_shape[:] = tokens.shape[1:]
        # one float32 row per image, so that distributed_map gathers embeddings and tokens in one tensor
        return torch.cat([embeds, tokens.float().flatten(1)], dim=1)

    rows = distributed_map(encode, len(images), batch_size)
    tokens = rows[:, dim:].view(len(images), *token_shape) if return_tokens else None
    return rows[:, :dim].contiguous(), tokens


def default_command(
    model_path: str,
    data: str,
    tasks: list[str],
    split: str,
    image_root: str | None,
    itm_k: int,
    max_images: int | None,
    holdout: Sequence[str | int] | None,
    out: str | None,
    fusion_split: str | None = "auto",
) -> str:
    """The `wvlp evaluate` command line equivalent to an `evaluate_model` call."""
    args = [
        "wvlp",
        "evaluate",
        "--model",
        model_path,
        "--task",
        "all" if tasks == list(TASKS) else ",".join(tasks),
        "--data",
        data,
        "--split",
        split,
        "--itm-k",
        str(itm_k),
    ]
    if fusion_split != "auto":
        args += ["--fusion-split", fusion_split or "none"]
    if image_root:
        args += ["--image-root", image_root]
    if max_images is not None:
        args += ["--max-images", str(max_images)]
    if holdout:
        args += ["--holdout-classes", ",".join(map(str, holdout))]
    if out:
        args += ["--out", out]
    return shlex.join(args)


def evaluate_model(
    model: str | Path | WVLPModel,
    data: str | Path | EvalData,
    *,
    processor: WVLPProcessor | None = None,
    tasks: str | Sequence[str] = "all",
    split: str = "test",
    image_root: str | Path | None = None,
    itm_k: int = 16,
    fusion_data: str | EvalData | None = "auto",
    query_sets: str | Sequence[str] | None = "auto",
    max_images: int | None = None,
    holdout_classes: Sequence[str | int] | None = None,
    classnames_file: str | Path | None = None,
    templates_file: str | Path = DEFAULT_TEMPLATES,
    probe_max_train: int | None = 10_000,
    stage: str = "pre-trained",
    batch_size: int = 128,
    out: str | Path | None = None,
    command: str | None = None,
) -> dict:
    """Evaluates a WVLP model and returns the `wvlp-eval/1` dict (also written to `out` with its plots when given).

    Args:
        model: a saved model folder, or an already-loaded `WVLPModel` (then `processor` is required).
        data: a corpus folder, a Karpathy JSON file (with `image_root`), a `save_to_disk` dataset folder, or `EvalData`.
        tasks: "all", or some of "zero-shot", "retrieval", "linear-probe" (list or comma-separated). With "all",
            tasks the data cannot support (zero-shot and probe need labels) are skipped; named ones raise instead.
        itm_k: ITM re-ranking depth of retrieval (0: ITC only).
        fusion_data: the validation queries that choose the ITC+ITM fusion (weight and k, per direction) applied to
            `split`: "auto" (the first of FUSION_SPLITS that `data` has, other than `split`, first
            FUSION_MAX_IMAGES images), a split name, an `EvalData`, or None (ITC and ITM-only re-rank only).
        query_sets: for a corpus folder, the class-level query sets (`evaluation/query_sets.py`) evaluated by
            retrieval and description zero-shot into `metrics.query_sets`: "auto" (those available and clean;
            the others are listed with the reason), a list of names (each must be available and clean), or None.
        max_images: keep the first N images of the split (quick runs).
        holdout_classes: class names or ids held out in pre-training: adds seen/unseen/harmonic zero-shot accuracy.
        classnames_file / templates_file: the versioned prompt files (default: the packaged one matching the labels,
            and `evaluation/prompts/templates_v1.txt`).
        probe_max_train: train images of the linear probe (a random fixed subset; None = all).
        stage: checkpoint stage written to the JSON ("pre-trained", "fine-tuned", ...).
        out: JSON path; side files `<out stem>.confusion.{json,png}` and `<out stem>.retrieval_examples.{json,png}`.
        command: the command line to record (default: the equivalent `wvlp evaluate` call).
    """
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images={max_images!r}: must be a positive integer (leave it out for every image)")
    if fusion_data == split:
        raise ValueError(f"fusion_data={fusion_data!r} is the evaluated split: choose the fusion on other data")
    if out is not None:
        check_outputs(Path(out))
    explicit = not (isinstance(tasks, str) and tasks == "all")
    task_list = parse_tasks(tasks)
    if isinstance(model, (str, Path)):
        model_path = str(model)
        model, loaded_processor = load_model(model)
        processor = processor or loaded_processor
    else:
        if processor is None:
            raise ValueError("evaluate_model: an already-loaded model needs its processor (processor=...)")
        model_path = str(getattr(model.config, "_name_or_path", "") or "<in-memory model>")
    model.eval()
    if isinstance(data, EvalData):
        eval_data, data_arg = data, data.source or data.name
    else:
        eval_data, data_arg = load_eval_data(data, split, image_root, max_images, probe_max_train), str(data)
    labelled = eval_data.labels is not None and eval_data.label_names is not None
    for task, ok in (("zero-shot", labelled), ("linear-probe", labelled and eval_data.train_images is not None)):
        if task in task_list and not ok:
            if explicit:
                raise ValueError(
                    f"task {task} needs class labels{' and a train split' if task == 'linear-probe' else ''}"
                    f", which data={data_arg!r} does not have"
                )
            task_list.remove(task)

    metrics, side = {}, {}
    need_tokens = "retrieval" in task_list and itm_k > 0
    image_features, image_tokens = encode_images(model, processor, eval_data.images, batch_size, need_tokens)
    classnames_path = None
    templates = load_templates(templates_file)
    if "zero-shot" in task_list:
        names = classnames_for(eval_data.label_names, classnames_file)
        classnames_path = names.path
        holdout = resolve_holdout(names_by_index(names.label_names), holdout_classes, setting="holdout_classes")
        classifier = build_zero_shot_classifier(model, processor, names.prompt_names, templates)
        metrics["zero_shot"], matrix = zero_shot_metrics(
            image_features @ classifier.T, eval_data.labels, names.label_names, holdout
        )
        side["confusion"] = {"classnames": list(names.label_names), "matrix": matrix.tolist()}
        if eval_data.text_labels is not None and len(eval_data.texts):
            metrics["zero_shot_descriptions"] = description_zero_shot(
                model, processor, eval_data, image_features, len(names.label_names), batch_size
            )
    if "retrieval" in task_list:
        fusion, chosen_on = None, None
        validation = fusion_validation(data, fusion_data, eval_data.split, image_root) if itm_k else None
        if validation is not None:
            fusion, chosen_on = choose_retrieval_fusion(model, processor, validation, itm_k, batch_size)
        result = retrieve(model, processor, eval_data, image_features, image_tokens, itm_k, batch_size, fusion)
        metrics["retrieval"] = result.metrics()
        if chosen_on is not None:
            metrics["retrieval"]["fusion"]["chosen_on"] = chosen_on
        side["retrieval_examples"] = retrieval_examples(
            result.t2i_fused or result.t2i, eval_data.texts, eval_data.text_groups, eval_data.image_groups
        )
        if query_sets is not None and not isinstance(data, EvalData) and eval_data.retrieval_level == "class":
            metrics["query_sets"] = evaluate_query_sets(
                model,
                processor,
                data,
                eval_data,
                query_sets,
                image_features,
                image_tokens,
                itm_k,
                fusion,
                batch_size,
                metrics,
            )
    if "linear-probe" in task_list:
        train_features, _ = encode_images(model, processor, eval_data.train_images, batch_size)
        metrics["linear_probe"] = linear_probe(
            train_features, eval_data.train_labels, image_features, eval_data.labels, len(eval_data.label_names)
        )

    record = {
        "schema": SCHEMA,
        "model": {
            "path": model_path,
            "stage": stage,
            "image_size": int(processor.image_processor.size),
            "config_sha256": config_sha256(model),
        },
        "data": {
            "name": eval_data.name,
            "split": eval_data.split,
            "num_images": len(eval_data.images),
            "num_texts": len(eval_data.texts),
            "classnames_file": classnames_path,
            "templates_file": display_path(Path(templates_file)) if "zero-shot" in task_list else None,
        },
        "command": command
        or default_command(
            model_path,
            data_arg,
            task_list,
            eval_data.split,
            str(image_root) if image_root else None,
            itm_k,
            max_images,
            holdout_classes,
            str(out) if out else None,
            fusion_data if isinstance(fusion_data, str) or fusion_data is None else fusion_data.split,
        ),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics,
    }
    load_eval(record)  # the producer refuses to write what the model card would refuse to read
    if out is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        write_outputs(record, side, Path(out), eval_data)
    return record


def description_zero_shot(
    model: WVLPModel,
    processor: WVLPProcessor,
    eval_data: EvalData,
    image_features: torch.Tensor,
    num_classes: int,
    batch_size: int,
) -> dict[str, float]:
    """Top-1/top-5 with one ensemble of descriptions per class; a class without descriptions is never predicted."""
    from wvlp.evaluation.zero_shot import topk_accuracy

    present = np.unique(eval_data.text_labels)
    remap = {label: i for i, label in enumerate(present.tolist())}
    embeddings = text_embeddings(model, processor, eval_data.texts, batch_size)
    weights = class_ensembles(embeddings, [remap[int(label)] for label in eval_data.text_labels], len(present))
    logits = torch.full((len(image_features), num_classes), float("-inf"))
    logits[:, torch.from_numpy(present)] = image_features @ weights.T
    return topk_accuracy(logits, torch.from_numpy(np.asarray(eval_data.labels)))


def retrieve(
    model: WVLPModel,
    processor: WVLPProcessor,
    eval_data: EvalData,
    image_features: torch.Tensor,
    image_tokens: torch.Tensor | None,
    itm_k: int,
    batch_size: int,
    fusion: dict[str, Fusion] | None = None,
) -> RetrievalResult:
    """Both retrieval directions on `eval_data`, ITM re-ranked over the top `itm_k` when `itm_k > 0` (and fused).

    Class-level data leaves out the queries of classes the other side lacks (e.g. an image whose class has no
    held-out description); caption data must pair every image and text.
    """
    if not eval_data.texts:
        raise ValueError(f"data {eval_data.name!r} has no texts to retrieve")
    text_features = text_embeddings(model, processor, eval_data.texts, batch_size)
    itm_scores = None
    if itm_k:
        text_tokens = tokenize(processor, eval_data.texts)

        def itm_scores(image_index: np.ndarray, text_index: np.ndarray) -> np.ndarray:
            return itm_pair_scores(
                model,
                image_tokens,
                text_tokens,
                torch.from_numpy(image_index),
                torch.from_numpy(text_index),
                batch_size,
            ).numpy()

    return evaluate_retrieval(
        image_features,
        text_features,
        eval_data.image_groups,
        eval_data.text_groups,
        itm_k=itm_k,
        itm_scores=itm_scores,
        fusion=fusion,
        drop_unanswerable=eval_data.retrieval_level == "class",
    )


def evaluate_query_sets(
    model: WVLPModel,
    processor: WVLPProcessor,
    folder: str | Path,
    eval_data: EvalData,
    names: str | Sequence[str],
    image_features: torch.Tensor,
    image_tokens: torch.Tensor | None,
    itm_k: int,
    fusion: dict[str, Fusion] | None,
    batch_size: int,
    computed: dict,
) -> dict:
    """`{name: {"source", "retrieval", "zero_shot_descriptions"}}` per query set, `{"skipped": {name: why}}` too.

    The held-out set is `eval_data`'s own texts: its blocks are taken from `computed` (the metrics so far) where
    they are there, not computed twice.
    """
    sets, skipped = corpus_query_sets(folder, eval_data.label_names or [], names)
    present = set(np.asarray(eval_data.labels).tolist())
    out: dict = {}
    for query_set in sets:
        keep = [i for i, label in enumerate(query_set.labels.tolist()) if label in present]
        if not keep:
            skipped[query_set.name] = "none of its classes has an image in the evaluated split"
            continue
        labels = query_set.labels[keep]
        data = dataclasses.replace(
            eval_data, texts=[query_set.texts[i] for i in keep], text_groups=labels, text_labels=labels
        )
        own = query_set.name == "same-llm-heldout"
        retrieval = computed["retrieval"] if own else None
        zero_shot = computed.get("zero_shot_descriptions") if own else None
        out[query_set.name] = {
            "source": {**query_set.source, "count": len(keep)},
            "retrieval": retrieval
            or retrieve(model, processor, data, image_features, image_tokens, itm_k, batch_size, fusion).metrics(),
            "zero_shot_descriptions": zero_shot
            or description_zero_shot(
                model, processor, data, image_features, len(eval_data.label_names or []), batch_size
            ),
        }
    if skipped:
        out["skipped"] = skipped
    return out


def fusion_validation(
    data: str | Path | EvalData, fusion_data: str | EvalData | None, split: str, image_root: str | Path | None
) -> EvalData | None:
    """The validation queries that choose the fusion (see `evaluate_model`), or None when there are none."""
    if fusion_data is None or isinstance(fusion_data, EvalData):
        return fusion_data
    if isinstance(data, EvalData):
        if fusion_data == "auto":
            return None  # in-memory data carries no other split
        raise ValueError(f"fusion_data={fusion_data!r} names a split, but data is in memory: pass an EvalData")
    names = [name for name in FUSION_SPLITS if name != split] if fusion_data == "auto" else [fusion_data]
    for name in names:
        try:
            validation = load_eval_data(data, name, image_root, FUSION_MAX_IMAGES, max_train_images=None)
        except MissingSplitError:
            if fusion_data != "auto":
                raise
            continue
        return _untrained_texts(data, validation) if validation.retrieval_level == "class" else validation
    return None


def _untrained_texts(folder: str | Path, validation: EvalData) -> EvalData:
    """Class-level validation with the corpus's cross-LLM queries as its texts, when it has them.

    A corpus has no held-out split of descriptions besides the test one, so its train split pairs images with the
    very descriptions ITM was trained on, and there ITM looks better than on unseen text: on the demo model ITM
    re-ranking gained 0.7 points of image->text R@1 on train texts and lost 1.7 on the test split. Another LLM's
    descriptions are text no model trained on (and not the test split).
    """
    try:
        (queries,), _ = corpus_query_sets(folder, validation.label_names or [], ["cross-llm"])
    except LookupError:
        validation.extra["texts"] = "descriptions/train (trained on: favours ITM)"
        return validation
    keep = np.isin(queries.labels, validation.labels)
    texts = [text for text, kept in zip(queries.texts, keep) if kept]
    labels = queries.labels[keep]
    out = dataclasses.replace(validation, texts=texts, text_groups=labels, text_labels=labels)
    out.extra = {**validation.extra, "texts": "queries/cross_llm (never trained on)"}
    return out


def choose_retrieval_fusion(
    model: WVLPModel, processor: WVLPProcessor, validation: EvalData, itm_k: int, batch_size: int
) -> tuple[dict[str, Fusion], dict]:
    """The fusion of each direction chosen on `validation` by `choose_fusion`, and the record of what was tried."""
    features, tokens = encode_images(model, processor, validation.images, batch_size, True)
    result = retrieve(model, processor, validation, features, tokens, itm_k, batch_size)
    chosen = {d: choose_fusion(getattr(result, d), result.candidates[d]) for d in ("i2t", "t2i")}
    record = {
        "data": validation.name,
        "split": validation.split,
        "num_images": len(validation.images),
        "num_texts": len(validation.texts),
        "texts": validation.extra.get("texts", validation.split),
        "tried": {d: tried for d, (_, tried) in chosen.items()},
    }
    return {d: fusion for d, (fusion, _) in chosen.items()}, record


def side_files(out: Path) -> list[Path]:
    """The files written next to the eval JSON `out`."""
    stem = out.with_suffix("")
    return [Path(f"{stem}.{name}.{ext}") for name in ("confusion", "retrieval_examples") for ext in ("json", "png")]


def _is_eval_json(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def check_outputs(out: Path) -> None:
    """Refuses, before any work, an `out` whose files exist and were not written by an earlier evaluation."""
    if out.exists() and not _is_eval_json(out):
        raise UnsafeOutputError(
            f"out={str(out)!r} exists and is not a {SCHEMA} eval JSON: it would be overwritten; choose another path"
        )
    if not out.exists():
        taken = [str(p) for p in side_files(out) if p.exists()]
        if taken:
            raise UnsafeOutputError(
                f"out={str(out)!r}: {', '.join(taken)} already exist and belong to no eval JSON: "
                "they would be overwritten; choose another path"
            )


def write_outputs(record: dict, side: dict, out: Path, eval_data: EvalData) -> None:
    """The eval JSON and its side files (confusion matrix and retrieval examples, as JSON and PNG)."""
    from wvlp.evaluation.plots import plot_confusion_matrix, plot_retrieval_examples

    confusion_json, confusion_png, examples_json, examples_png = side_files(out)
    if "confusion" in side:
        atomic_write_text(confusion_json, json.dumps(side["confusion"]) + "\n")
        plot_confusion_matrix(side["confusion"]["matrix"], side["confusion"]["classnames"], str(confusion_png))
    if side.get("retrieval_examples"):
        atomic_write_text(examples_json, json.dumps(side["retrieval_examples"], indent=1) + "\n")
        plot_retrieval_examples(side["retrieval_examples"], eval_data.images, str(examples_png))
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")  # last: it vouches for the side files
