"""Text-only P-Former pre-training (decoupled language pre-training), reached through `train/run.py`:

    python train/run.py --config train/configs/pformer.yaml --set data.path=out/fashion-mnist/corpus
    python train/run.py --config train/configs/pformer-tiny.yaml --set data.path=<corpus>     # seconds, tests

Sentences: the corpus' generated descriptions plus their retrieved external-knowledge sentences (train split);
the held-out descriptions (test split) give the perplexity in `metrics.json`. The frozen LM is the packaged
SmolLM2-135M-Instruct (dequantised once into the cache by `wvlp.data.llm`), a random tiny Llama, or a folder.
The run folder gets checkpoints, the P-Former with its tokenizer in `model/` (its config records the LM's Hub id,
never a path), `metrics.json`, and for the tiny LM the LM itself in `language_model/`.
"""

import json
import math
from pathlib import Path

import datasets
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, set_seed

from wvlp.modeling import PFormerConfig, PFormerModel
from wvlp.modeling.convert_minilm import load_bert_folder, text_config_from_bert
from wvlp.modeling.modeling_bridge import freeze_language_model, load_lm_tokenizer, prompt_token_nll
from wvlp.modeling.pretrained_assets import minilm_path
from wvlp.train.collator import lm_sentence_tokens
from wvlp.train.config import ModelArgs, RunConfig
from wvlp.train.presets import TINY_LM, TINY_TEXT, language_model_folder, stable_language_model_id
from wvlp.train.run_folder import open_run_folder, write_run_folder
from wvlp.train.trainer import NonFiniteLossError, WVLPTrainer


def tiny_language_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    """A random 2-layer, 32-wide Llama (tests and smoke runs): same code path as a real LM, milliseconds a step."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, **TINY_LM)
    return freeze_language_model(LlamaForCausalLM(config))


def load_frozen_language_model(spec: str, text_tokenizer, seed: int = 0) -> tuple[torch.nn.Module, object, str | None]:
    """(frozen LM, its tokenizer, its stable name) for `pformer.language_model` = smollm2 | tiny | a folder.

    The stable name is what a saved config may record (`PFormerConfig.language_model_id`): the Hub id of the packaged
    SmolLM2, None for the random tiny LM or a local folder (never a machine path).
    """
    if spec == "tiny":  # the tiny LM reads the text tokenizer's ids: no second vocabulary to ship
        return tiny_language_model(len(text_tokenizer), seed), text_tokenizer, None
    folder = Path(language_model_folder(spec))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"pformer.language_model={spec!r}: {folder} is not a transformers model folder")
    from wvlp.modeling.modeling_bridge import load_language_model

    return load_language_model(str(folder)), load_lm_tokenizer(str(folder)), stable_language_model_id(spec)


def build_pformer(args: ModelArgs, prompt_dim: int, language_model_id: str | None) -> PFormerModel:
    """The P-Former chosen by `model.init`: default (MiniLM weights), tiny (random) or pretrained (a folder).

    `language_model_id` is the frozen LM's stable name for the config (None when it has none); the LM itself is
    attached with `attach_language_model`.
    """
    overrides = dict(args.config)
    common = dict(prompt_dim=prompt_dim, language_model_id=language_model_id)
    if args.init == "default":
        bert_config = json.loads((minilm_path() / "config.json").read_text())
        config = PFormerConfig(
            text_config=text_config_from_bert(bert_config, pooling="mean"), **{**common, **overrides}
        )
        model = PFormerModel(config)
        model.text_model.load_state_dict(load_bert_folder(minilm_path()))
        return model
    if args.init == "tiny":
        text = {**TINY_TEXT, **overrides.pop("text_config", {})}
        text.setdefault("vocab_size", 30522)
        return PFormerModel(
            PFormerConfig(text_config=text, **{"num_prompts": 4, "embed_dim": 16, **common, **overrides})
        )
    if args.init == "pretrained":
        if not args.path or not Path(args.path).is_dir():
            raise FileNotFoundError(f"model.path={args.path!r} is not a folder with a saved P-Former")
        model = PFormerModel.from_pretrained(args.path, **overrides)
        if model.config.prompt_dim != prompt_dim:
            raise ValueError(
                f"{args.path}: prompts are {model.config.prompt_dim}-d, the LM's embeddings {prompt_dim}-d"
            )
        return model
    raise ValueError(f"model.init={args.init!r}: a P-Former run takes default, tiny or pretrained")


def load_sentences(path: str, sources: list[str], max_eval: int | None) -> tuple[list[str], list[str]]:
    """Training sentences (train descriptions and/or their knowledge sentences, deduplicated) and held-out ones."""
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"data.path={path!r} is not a corpus folder (write one with `wvlp describe`)")
    unknown = set(sources) - {"descriptions", "knowledge"}
    if unknown or not sources:
        raise ValueError(f"pformer.sources={sources}: choose from 'descriptions' and 'knowledge'")
    descriptions = datasets.load_dataset(path, "descriptions")
    train = descriptions["train"]
    sentences = []
    if "descriptions" in sources:
        sentences += train["text"]
    if "knowledge" in sources and "knowledge_texts" in train.column_names:
        sentences += [text for texts in train["knowledge_texts"] for text in (texts or [])]
    sentences = list(dict.fromkeys(s.strip() for s in sentences if s and s.strip()))
    held_out = descriptions["test"]["text"] if "test" in descriptions else []
    return sentences, list(held_out)[:max_eval] if max_eval else list(held_out)


class PFormerCollator:
    """Rows with a `text` -> encoder tokens (BERT) and the same sentences in the LM's tokens (+ eos, right-padded)."""

    def __init__(self, text_tokenizer, lm_tokenizer, max_length: int = 32, lm_max_length: int = 48):
        self.text_tokenizer, self.lm_tokenizer = text_tokenizer, lm_tokenizer
        self.max_length, self.lm_max_length = max_length, lm_max_length
        lm_sentence_tokens(lm_tokenizer, ["check"], lm_max_length)  # fails now, not mid-run, without an eos token

    def lm_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded LM ids ending in eos and their mask."""
        return lm_sentence_tokens(self.lm_tokenizer, texts, self.lm_max_length)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = [row["text"] if isinstance(row, dict) else row for row in rows]
        encoded = self.text_tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        lm_input_ids, lm_attention_mask = self.lm_tokens(texts)
        return dict(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            lm_input_ids=lm_input_ids,
            lm_attention_mask=lm_attention_mask,
        )


class PFormerTrainer(WVLPTrainer):
    """`WVLPTrainer` (named-term logging, NaN guard, crash-safe checkpoints) for the P-Former's forward."""

    def current_alpha(self) -> float:
        return 0.0  # no momentum distillation in the text-only stage

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Runs the P-Former with its losses, records each named term, refuses non-finite losses."""
        outputs = model(**inputs, return_loss=True)
        if not torch.isfinite(outputs.loss.detach()).all():
            terms = {k: float(v) for k, v in outputs.items() if k.endswith("_loss")}
            raise NonFiniteLossError(f"non-finite loss at step {self.state.global_step}: {terms}")
        if model.training:
            for name, value in outputs.items():
                if name.endswith("_loss") and name != "loss":
                    self._term_sums[name] += float(value.detach())
                    self._term_counts[name] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss


@torch.no_grad()
def sentence_perplexity(
    pformer: PFormerModel, collator: PFormerCollator, sentences: list[str], batch_size: int = 16
) -> float:
    """exp(mean NLL per LM token) of `sentences` regenerated by the frozen LM from their own P-Former prompts."""
    if not sentences:
        return float("nan")
    was_training = pformer.training
    pformer.eval()
    total, count = 0.0, 0
    for start in range(0, len(sentences), batch_size):
        batch = collator(sentences[start : start + batch_size])
        prompts = pformer.get_prompts(batch["input_ids"], batch["attention_mask"])
        nll, n = prompt_token_nll(
            pformer.get_language_model(), prompts, batch["lm_input_ids"], batch["lm_attention_mask"]
        )
        total, count = total + float(nll.sum()), count + int(n.sum())
    pformer.train(was_training)
    return math.exp(total / max(count, 1))


def train_pformer(config: RunConfig, resume: str | bool | None = None) -> dict:
    """Runs one text-only P-Former job; returns the metrics it also writes to `metrics.json`."""
    args, pargs = config.training, config.pformer
    checkpoint = open_run_folder(args, resume)
    torch.set_flush_denormal(True)
    set_seed(args.seed)
    text_tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    lm, lm_tokenizer, lm_id = load_frozen_language_model(pargs.language_model, text_tokenizer, args.seed)
    prompt_dim = lm.get_input_embeddings().weight.shape[1]
    model = build_pformer(config.model, prompt_dim, lm_id).attach_language_model(lm)
    train_sentences, eval_sentences = load_sentences(config.data.path, pargs.sources, pargs.max_eval_sentences)
    if config.data.max_train_samples:
        train_sentences = train_sentences[: config.data.max_train_samples]
    collator = PFormerCollator(text_tokenizer, lm_tokenizer, config.data.max_length, pargs.lm_max_length)
    trainer = PFormerTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=datasets.Dataset.from_dict({"text": train_sentences}),
    )
    before = sentence_perplexity(model, collator, eval_sentences)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {
        "config": config.source,
        "kind": "pformer",
        "train": result.metrics,
        "train_sentences": len(train_sentences),
        "eval_sentences": len(eval_sentences),
        "heldout_perplexity_before": before,
        "heldout_perplexity_after": sentence_perplexity(model, collator, eval_sentences),
    }
    if trainer.is_world_process_zero():
        if pargs.language_model == "tiny":
            # A random tiny LM exists nowhere else: keep it (it reads the text tokenizer's ids) so that the run can be
            # reused; attach it with load_language_model(<run>/language_model). The config records no path to it.
            out = Path(args.output_dir)
            lm.save_pretrained(out / "language_model")
            text_tokenizer.save_pretrained(out / "language_model")
        write_run_folder(trainer, model, text_tokenizer, metrics)
    return metrics


__all__ = [
    "PFormerCollator",
    "PFormerTrainer",
    "build_pformer",
    "load_frozen_language_model",
    "load_sentences",
    "sentence_perplexity",
    "tiny_language_model",
    "train_pformer",
]
