"""The locked-text phase's cache: every distinct description and knowledge sentence through the frozen text tower once.

With the text tower locked (LiT), its pooled output of a given sentence never changes, and the corpus holds only a
few hundred distinct sentences, so a locked-text step looks them up instead of running the tower five times per
image. The cache is a safetensors file in `<run folder>/text-cache/`, named by a fingerprint of the text tower's
weights and the tokenized sentences (so of the tokenizer, `max_length` and the corpus too): any change to either
builds a new one, a resumed or repeated run reuses it.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from wvlp.common.safe_io import atomic_write_bytes
from wvlp.modeling import WVLPModel
from wvlp.train.collator import DescriptionPool

# The token fields a locked-text step does not read: it gets the cached pooled text instead.
TEXT_TOKEN_FIELDS = (
    "input_ids",
    "attention_mask",
    "mlm_input_ids",
    "mlm_labels",
    "knowledge_input_ids",
    "knowledge_attention_mask",
    "lm_input_ids",
    "lm_attention_mask",
)
INDEX_FIELDS = ("description_index", "knowledge_index")


def fingerprint(text_model: torch.nn.Module, tokens: list[torch.Tensor]) -> str:
    """SHA-256 of the text tower's parameters and buffers (names, dtypes, shapes, bytes) and of the token ids."""
    digest = hashlib.sha256()
    for name, tensor in sorted(text_model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for ids in tokens:
        digest.update(f"{tuple(ids.shape)}".encode())
        digest.update(ids.to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def pooled_text(model: WVLPModel, tokens: dict[str, torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """(n, text_hidden_size) pooled output of the text tower in eval mode (no dropout), in batches."""
    was_training = model.text_model.training
    model.text_model.eval()
    device = next(model.text_model.parameters()).device
    rows = []
    for start in range(0, tokens["input_ids"].shape[0], batch_size):
        part = {k: v[start : start + batch_size].to(device) for k, v in tokens.items()}
        rows.append(model.text_model.encode(part["input_ids"], part["attention_mask"]).pooler_output.float().cpu())
    model.text_model.train(was_training)
    hidden = model.config.text_config.hidden_size
    return torch.cat(rows) if rows else torch.zeros(0, hidden)


@dataclass
class LockedText:
    """The cached pooled text of one pool: a row per pool description and per distinct knowledge sentence."""

    descriptions: torch.Tensor  # (len(pool.texts), text_hidden_size)
    knowledge: torch.Tensor  # (len(pool.knowledge_sentences), text_hidden_size)
    path: Path
    built: bool  # False when an existing cache file was reused

    @classmethod
    def load_or_build(
        cls,
        model: WVLPModel,
        tokenizer,
        pool: DescriptionPool,
        folder: str | Path,
        *,
        max_length: int,
        knowledge_max_length: int,
        write: bool = True,
    ) -> "LockedText":
        """The cache of `pool` for `model`'s text tower, read from `folder` if its fingerprint is there, else built
        (and written there when `write`: the process that writes the run folder)."""

        def tokenize(texts: list[str], length: int) -> dict[str, torch.Tensor]:
            # Padded and truncated exactly as the collator does, so a cached row equals the tower on the batch tokens.
            if not texts:
                return {
                    "input_ids": torch.zeros(0, length, dtype=torch.long),
                    "attention_mask": torch.zeros(0, length),
                }
            out = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
            return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

        distinct = sorted(set(pool.texts))
        description_tokens = tokenize(distinct, max_length)
        knowledge_tokens = tokenize(pool.knowledge_sentences, knowledge_max_length)
        key = fingerprint(model.text_model, [description_tokens["input_ids"], knowledge_tokens["input_ids"]])
        path = Path(folder) / f"{key[:32]}.safetensors"
        position = {text: i for i, text in enumerate(distinct)}
        row_of = torch.tensor([position[text] for text in pool.texts], dtype=torch.long)
        if path.is_file():
            stored = load_file(path)
            return cls(stored["descriptions"][row_of], stored["knowledge"], path, built=False)
        descriptions, knowledge = pooled_text(model, description_tokens), pooled_text(model, knowledge_tokens)
        if write:
            atomic_write_bytes(path, save({"descriptions": descriptions, "knowledge": knowledge}))
        return cls(descriptions[row_of], knowledge, path, built=True)

    def step_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collated batch (with `text_indices`) as a locked-text step's inputs: the cached rows in place of tokens."""
        inputs = {k: v for k, v in batch.items() if k not in TEXT_TOKEN_FIELDS and k not in INDEX_FIELDS}
        device = batch["pixel_values"].device
        self.descriptions, self.knowledge = self.descriptions.to(device), self.knowledge.to(device)  # once
        inputs["text_pooler_output"] = self.descriptions[batch["description_index"]]
        if "knowledge_index" in batch:  # -1 pads: any row, knowledge_valid masks it out
            inputs["knowledge_pooler_output"] = self.knowledge[batch["knowledge_index"].clamp(min=0)]
        return inputs


def full_step_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated batch as a full step's inputs: the pool-row indices dropped."""
    return {k: v for k, v in batch.items() if k not in INDEX_FIELDS}
