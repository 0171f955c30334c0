"""Evaluation of the generative path: image -> bridge prompts -> frozen LM.

- `description_perplexity`: held-out descriptions scored under image conditioning (exp of the mean NLL per LM token).
- `describe_then_classify`: generate a description per image, embed it with the text tower, match to class names.
- `generated_examples`: a few (label, generated text) pairs for a report.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from wvlp.modeling.modeling_bridge import prompt_token_nll


def _check_bridge(model) -> None:
    if getattr(model, "prompt_bridge", None) is None:
        raise ValueError("model has no image-to-prompt bridge (config.prompt_bridge=False): nothing to evaluate")


@torch.no_grad()
def description_perplexity(
    model,
    language_model,
    pixel_values: torch.Tensor,
    lm_input_ids: torch.Tensor,
    lm_attention_mask: torch.Tensor | None = None,
    batch_size: int = 16,
) -> float:
    """exp(mean NLL per token) of each image's paired description (LM tokens, right-padded) given its prompts."""
    _check_bridge(model)
    if pixel_values.shape[0] != lm_input_ids.shape[0]:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[0]} images but lm_input_ids {lm_input_ids.shape[0]} rows"
        )
    if lm_attention_mask is None:
        lm_attention_mask = torch.ones_like(lm_input_ids)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, pixel_values.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        prompts = model.get_image_prompts(pixel_values[rows])
        nll, n = prompt_token_nll(language_model, prompts, lm_input_ids[rows], lm_attention_mask[rows])
        total, count = total + float(nll.sum()), count + int(n.sum())
    model.train(was_training)
    return math.exp(total / max(count, 1))


@torch.no_grad()
def _describe(model, language_model, lm_tokenizer, pixel_values, max_new_tokens: int, batch_size: int) -> list[str]:
    texts = []
    for start in range(0, pixel_values.shape[0], batch_size):
        texts += model.generate_description(
            pixel_values[start : start + batch_size],
            language_model=language_model,
            tokenizer=lm_tokenizer,
            max_new_tokens=max_new_tokens,
        )
    return texts


@torch.no_grad()
def _embed_texts(model, text_tokenizer, texts: Sequence[str], max_length: int = 64) -> torch.Tensor:
    encoded = text_tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return model.get_text_features(encoded["input_ids"], encoded["attention_mask"]).pooler_output


@torch.no_grad()
def describe_then_classify(
    model,
    language_model,
    lm_tokenizer,
    text_tokenizer,
    pixel_values: torch.Tensor,
    labels: Sequence[int],
    class_names: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    max_new_tokens: int = 24,
    batch_size: int = 16,
) -> dict:
    """Top-1 accuracy of classifying each image by its *generated* description (text tower vs class-name prompts)."""
    _check_bridge(model)
    labels = torch.as_tensor(list(labels))
    if labels.shape[0] != pixel_values.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {pixel_values.shape[0]} images")
    if not class_names:
        raise ValueError("class_names is empty")
    was_training = model.training
    model.eval()
    texts = _describe(model, language_model, lm_tokenizer, pixel_values, max_new_tokens, batch_size)
    # An empty generation still gets an embedding (of [CLS][SEP]): it simply classifies badly.
    described = _embed_texts(model, text_tokenizer, texts)
    classes = torch.stack(
        [
            F.normalize(_embed_texts(model, text_tokenizer, [t.format(name) for t in templates]).mean(0), dim=-1)
            for name in class_names
        ]
    )
    predicted = (described @ classes.t()).argmax(-1)
    model.train(was_training)
    return {
        "accuracy": float((predicted == labels).float().mean()),
        "n": int(labels.shape[0]),
        "empty_generations": sum(not t for t in texts),
    }


@torch.no_grad()
def generated_examples(
    model,
    language_model,
    lm_tokenizer,
    pixel_values: torch.Tensor,
    labels: Sequence[int],
    class_names: Sequence[str],
    n: int = 4,
    max_new_tokens: int = 32,
) -> list[dict]:
    """Up to `n` examples {index, label, text} of greedy descriptions, for a report or model card."""
    _check_bridge(model)
    n = min(n, pixel_values.shape[0])
    texts = model.generate_description(
        pixel_values[:n], language_model=language_model, tokenizer=lm_tokenizer, max_new_tokens=max_new_tokens
    )
    return [{"index": i, "label": class_names[int(labels[i])], "text": text} for i, text in enumerate(texts)]


__all__ = ["describe_then_classify", "description_perplexity", "generated_examples"]
