"""Study hook: does the P-Former alignment term help image-conditioned generation at the same compute?

    python -m studies.pformer_study --corpus out/fashion-mnist/corpus --vl-model out/fashion-mnist/run/model \
        --seeds 0 1 2 --steps 60 --pformer-steps 120 --alignment-weights 1 10 --out docs/pformer_results.json

`run_alignment_study()` first trains one text-only P-Former briefly (shared by both arms, outside the arm budget),
then for every seed trains the image-to-prompt bridge twice from the same initialisation on the same batches:
generation loss only, and generation + w x MSE to the frozen P-Former's prompts for each w in `alignment_weights`
(the reference uses 10). Only the bridge
learns (image tower, text tower and LM frozen), so both arms cost the same per step. Per seed it reports the held-out
description perplexity under image conditioning (test images paired with held-out descriptions of their class) and
describe-then-classify accuracy (greedy descriptions matched to class names by the text tower), plus a few generated
examples. Defaults: packaged SmolLM2-135M; the bridge reads `--vl-model` (the demo's pre-trained model) or the
packaged towers at 64 px; minutes on 2 CPU cores. `tiny=True` swaps in random tiny models and synthetic data.
"""

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from wvlp.evaluation.generative import describe_then_classify, description_perplexity, generated_examples
from wvlp.modeling import WVLPConfig, WVLPForPreTraining, WVLPImageProcessor, WVLPModel, build_default_model
from wvlp.modeling.pretrained_assets import minilm_path
from wvlp.train.config import ModelArgs
from wvlp.train.pformer_run import PFormerCollator, build_pformer, load_frozen_language_model, sentence_perplexity

from studies.study import seed_stats

DEFAULT_CORPUS = "out/fashion-mnist/corpus"
OFF = dict(
    itc_loss_weight=0.0,
    itm_loss_weight=0.0,
    mlm_loss_weight=0.0,
    imc_loss_weight=0.0,
    knowledge_loss_weight=0.0,
    queue_size=0,
    momentum_distillation=False,
)


def _synthetic_data(num_train: int, num_eval: int, image_size: int) -> dict:
    """Class-coloured noise images with one-line class descriptions (tiny mode)."""
    names = ["shirt", "trouser", "bag", "sneaker"]
    g = torch.Generator().manual_seed(0)

    def images(labels):
        base = torch.stack([torch.full((3, image_size, image_size), (label - 1.5) / 1.5) for label in labels])
        return base + 0.3 * torch.randn(base.shape, generator=g)

    train_labels = [i % len(names) for i in range(num_train)]
    eval_labels = [i % len(names) for i in range(num_eval)]
    return dict(
        names=names,
        train_pixels=images(train_labels),
        train_labels=train_labels,
        descriptions={i: [f"a {n} seen from the front", f"a plain {n} on white"] for i, n in enumerate(names)},
        eval_pixels=images(eval_labels),
        eval_labels=eval_labels,
        eval_texts=[f"a {names[y]} photo" for y in eval_labels],
    )


def _corpus_data(path: str, num_train: int, num_eval: int, image_size: int) -> dict:
    """Images and descriptions of a `wvlp describe` corpus; test images get held-out descriptions of their class."""
    import datasets

    if not Path(path).is_dir():
        raise FileNotFoundError(f"corpus={path!r} is not a corpus folder (write one with `wvlp describe`)")
    images, descriptions = datasets.load_dataset(path, "images"), datasets.load_dataset(path, "descriptions")
    processor = WVLPImageProcessor(size=image_size)
    train_rows = images["train"].shuffle(seed=0).select(range(num_train))
    eval_rows = images["test"].shuffle(seed=0).select(range(num_eval))
    by_label: dict[int, list[str]] = {}
    for row in descriptions["train"]:
        by_label.setdefault(row["label"], []).append(row["text"])
    held_out: dict[int, list[str]] = {}
    for row in descriptions["test"] if "test" in descriptions else descriptions["train"]:
        held_out.setdefault(row["label"], []).append(row["text"])
    eval_labels = list(eval_rows["label"])
    counters: dict[int, int] = {}
    eval_texts = []
    for label in eval_labels:  # cycle through the class's held-out descriptions
        pool = held_out.get(label) or by_label[label]
        eval_texts.append(pool[counters.get(label, 0) % len(pool)])
        counters[label] = counters.get(label, 0) + 1
    return dict(
        names=images["train"].features["label"].names,
        train_pixels=processor(list(train_rows["image"]), return_tensors="pt")["pixel_values"],
        train_labels=list(train_rows["label"]),
        descriptions=by_label,
        eval_pixels=processor(list(eval_rows["image"]), return_tensors="pt")["pixel_values"],
        eval_texts=eval_texts,
        eval_labels=eval_labels,
    )


def _vl_model(
    tiny: bool, image_size: int, vocab_size: int, bridge: dict, path: str | None = None
) -> WVLPForPreTraining:
    """The VL model whose bridge the arms train: a pre-trained `WVLPModel` folder, the packaged towers, or tiny."""
    if path:
        if not Path(path, "config.json").is_file():
            raise FileNotFoundError(f"vl_model={path!r} is not a saved WVLP model folder")
        config = WVLPConfig.from_pretrained(path, **OFF, **bridge)
        return WVLPForPreTraining.from_published(WVLPModel.from_pretrained(path, config=config))
    if tiny:
        text = dict(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        config = WVLPConfig(
            vision_config=dict(variant="lite0", image_size=image_size),
            text_config=text,
            fusion_layer=1,
            embed_dim=16,
            **OFF,
            **bridge,
        )
        return WVLPForPreTraining(config)
    return build_default_model(image_size, for_pretraining=True, **OFF, **bridge)


def run_alignment_study(
    corpus: str | None = None,
    language_model: str = "smollm2",
    seeds: tuple[int, ...] = (0, 1, 2),
    steps: int = 30,
    pformer_steps: int = 40,
    batch_size: int = 8,
    num_eval: int = 32,
    num_prompts: int = 8,
    alignment_weights: tuple[float, ...] = (10.0,),
    learning_rate: float = 1e-3,
    image_size: int = 64,
    tiny: bool = False,
    vl_model: str | None = None,
    max_new_tokens: int = 24,
    output: str | None = None,
) -> dict:
    """Bridge trained with vs without the P-Former alignment term (same steps, batches and init per seed).

    `vl_model`: a pre-trained `WVLPModel` folder (e.g. the demo's out/fashion-mnist/run/model) whose towers the
    bridge reads and whose text tower classifies the generated descriptions; its resolution replaces `image_size`.
    Returns {"arms": {"without_alignment"|"alignment_w<w>": {"heldout_perplexity": {mean, std, n, values},
    "describe_then_classify": {...}, "examples": [the first seed's]}}, "pformer_heldout_perplexity", "seeds",
    "settings", "seconds"}; also
    written as JSON to `output` when given.
    """
    if steps < 1 or pformer_steps < 0 or batch_size < 1 or num_eval < 1 or not seeds:
        raise ValueError("steps, batch_size and num_eval must be >= 1, pformer_steps >= 0, and seeds non-empty")
    if not alignment_weights or any(w <= 0 for w in alignment_weights):
        raise ValueError(f"alignment_weights={alignment_weights}: give one or more weights > 0")
    started = time.perf_counter()
    torch.set_flush_denormal(True)
    if vl_model:
        image_size = WVLPConfig.from_pretrained(vl_model).vision_config.image_size
    text_tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    lm, lm_tokenizer, lm_id = load_frozen_language_model(language_model, text_tokenizer)
    prompt_dim = lm.get_input_embeddings().weight.shape[1]
    num_train = max(batch_size * 4, 32)
    data = (
        _synthetic_data(num_train, num_eval, image_size)
        if tiny
        else _corpus_data(corpus or DEFAULT_CORPUS, num_train, num_eval, image_size)
    )
    collator = PFormerCollator(text_tokenizer, lm_tokenizer, max_length=32, lm_max_length=32)

    # Stage 0: one text-only P-Former on the training descriptions, frozen afterwards.
    torch.manual_seed(0)
    pformer = build_pformer(
        ModelArgs(init="tiny" if tiny else "default", config={"num_prompts": num_prompts}), prompt_dim, lm_id
    ).attach_language_model(lm)
    sentences = [t for texts in data["descriptions"].values() for t in texts]
    optimizer = torch.optim.AdamW(pformer.parameters(), lr=1e-4 if not tiny else 1e-3, weight_decay=0.05)
    pformer.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(pformer_steps):
        picks = torch.randint(len(sentences), (batch_size,), generator=g).tolist()
        optimizer.zero_grad()
        pformer(**collator([sentences[i] for i in picks])).loss.backward()
        optimizer.step()
    pformer.eval()
    # The reference the bridge is pulled to: how well the frozen LM regenerates held-out text from P-Former prompts.
    pformer_perplexity = sentence_perplexity(pformer, collator, sorted(set(data["eval_texts"])))

    eval_lm = collator.lm_tokens(data["eval_texts"])
    bridge = dict(
        prompt_bridge=True,
        bridge_num_prompts=num_prompts,
        bridge_prompt_dim=prompt_dim,
        language_model_id=lm_id,
        generation_loss_weight=1.0,
    )
    arms = {"without_alignment": 0.0, **{f"alignment_w{w:g}": w for w in alignment_weights}}
    results = {name: {"heldout_perplexity": [], "describe_then_classify": []} for name in arms}
    for seed in seeds:
        torch.manual_seed(seed)
        initial = _vl_model(
            tiny, image_size, len(text_tokenizer), {**bridge, "pformer_alignment_loss_weight": 0.0}, vl_model
        )
        for arm, weight in arms.items():
            torch.manual_seed(seed)  # the same dropout draws in every arm, whatever ran before it
            model = copy.deepcopy(initial)
            model.config.pretraining_config.pformer_alignment_loss_weight = weight
            model.attach_language_model(lm).attach_pformer(pformer)
            model.requires_grad_(False)
            model.wvlp.prompt_bridge.requires_grad_(True)
            model.eval()  # frozen towers: BatchNorm statistics and dropout fixed; only the bridge trains
            model.wvlp.prompt_bridge.train()
            optimizer = torch.optim.AdamW(model.wvlp.prompt_bridge.parameters(), lr=learning_rate, weight_decay=0.05)
            g = torch.Generator().manual_seed(seed)
            for _ in range(steps):  # identical batches in both arms
                rows = torch.randint(len(data["train_labels"]), (batch_size,), generator=g).tolist()
                labels = [data["train_labels"][i] for i in rows]
                texts = [
                    data["descriptions"][y][int(torch.randint(len(data["descriptions"][y]), (1,), generator=g))]
                    for y in labels
                ]
                batch = collator(texts)
                out = model(
                    pixel_values=data["train_pixels"][rows],
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    category_ids=torch.tensor(labels),
                    lm_input_ids=batch["lm_input_ids"],
                    lm_attention_mask=batch["lm_attention_mask"],
                )
                optimizer.zero_grad()
                out.loss.backward()
                optimizer.step()
            results[arm]["heldout_perplexity"].append(
                description_perplexity(model.wvlp, lm, data["eval_pixels"], *eval_lm, batch_size=16)
            )
            results[arm]["describe_then_classify"].append(
                describe_then_classify(
                    model.wvlp,
                    lm,
                    lm_tokenizer,
                    text_tokenizer,
                    data["eval_pixels"],
                    data["eval_labels"],
                    data["names"],
                    max_new_tokens=max_new_tokens,
                )["accuracy"]
            )
            if seed == seeds[0]:
                results[arm]["examples"] = generated_examples(
                    model.wvlp,
                    lm,
                    lm_tokenizer,
                    data["eval_pixels"],
                    data["eval_labels"],
                    data["names"],
                    n=4,
                    max_new_tokens=max_new_tokens,
                )
    report = {
        "arms": {
            arm: {k: seed_stats(v) if k != "examples" else v for k, v in values.items()}
            for arm, values in results.items()
        },
        "pformer_heldout_perplexity": pformer_perplexity,
        "seeds": list(seeds),
        "settings": dict(
            corpus=None if tiny else (corpus or DEFAULT_CORPUS),
            language_model=language_model,
            steps=steps,
            pformer_steps=pformer_steps,
            batch_size=batch_size,
            num_eval=num_eval,
            num_prompts=num_prompts,
            alignment_weights=list(alignment_weights),
            learning_rate=learning_rate,
            image_size=image_size,
            tiny=tiny,
            vl_model=vl_model,
            max_new_tokens=max_new_tokens,
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point; prints the report as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--language-model", default="smollm2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pformer-steps", type=int, default=40)
    parser.add_argument("--alignment-weights", type=float, nargs="+", default=[10.0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--vl-model", default=None, help="a pre-trained WVLPModel folder (default: packaged towers)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    report = run_alignment_study(
        args.corpus,
        args.language_model,
        tuple(args.seeds),
        args.steps,
        args.pformer_steps,
        alignment_weights=tuple(args.alignment_weights),
        tiny=args.tiny,
        vl_model=args.vl_model,
        output=args.out,
    )
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
