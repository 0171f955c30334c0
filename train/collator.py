"""The distillation collator: dataset rows (image, label) -> a pre-training batch for `WVLPForPreTraining`.

Each image is paired with one description sampled from its category's pool; the batch also carries the MLM-masked
text, the retrieved knowledge sentences of the sampled descriptions, the frozen-teacher soft targets built from
their stored teacher embeddings (so no teacher runs during training), for the image-to-prompt bridge the
descriptions in the frozen LM's tokens and, for the locked-text phase, the pool rows of the texts (`text_indices`).

Randomness is drawn per row from (seed, epoch, image id): a batch is a pure function of its rows, the seed and the
epoch, independent of batch composition, worker or process — which keeps resumed and distributed runs identical.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from wvlp.modeling import WVLPProcessor

IGNORE_INDEX = -100


def stable_hash(text: str) -> int:
    """A 63-bit hash of `text` that is the same in every process and Python run."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


@dataclass
class DescriptionPool:
    """The descriptions of every category, with their retrieved knowledge and frozen-teacher embeddings."""

    texts: list[str]
    labels: np.ndarray
    knowledge: list[list[str]] = field(default_factory=list)
    teacher_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"description pool: {len(self.texts)} texts but {len(self.labels)} labels")
        if self.knowledge and len(self.knowledge) != len(self.texts):
            raise ValueError(f"description pool: {len(self.knowledge)} knowledge lists for {len(self.texts)} texts")
        if self.teacher_embeddings is not None:
            embeddings = np.asarray(self.teacher_embeddings, dtype=np.float32)
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            self.teacher_embeddings = embeddings / np.clip(norms, 1e-12, None)
        self.rows_of = {int(label): np.flatnonzero(self.labels == label) for label in np.unique(self.labels)}
        # The distinct knowledge sentences and, per description, the indices of its retrieved ones: the rows of the
        # locked-text cache (`wvlp.train.text_cache`), each embedded once however many descriptions retrieve it.
        self.knowledge_sentences = sorted({sentence for retrieved in self.knowledge for sentence in retrieved})
        position = {sentence: i for i, sentence in enumerate(self.knowledge_sentences)}
        self.knowledge_ids = [[position[sentence] for sentence in retrieved] for retrieved in self.knowledge]

    @classmethod
    def from_dataset(cls, descriptions: Any) -> "DescriptionPool":
        """From the `descriptions` config of a dataset written by `dataset_builder` (columns text, label, ...)."""
        columns = set(descriptions.column_names)
        missing = {"text", "label"} - columns
        if missing:
            raise ValueError(
                f"the descriptions dataset lacks the columns {sorted(missing)} (it has {sorted(columns)})"
            )
        knowledge = descriptions["knowledge_texts"] if "knowledge_texts" in columns else []
        teacher = np.asarray(descriptions["teacher_embedding"]) if "teacher_embedding" in columns else None
        return cls(list(descriptions["text"]), np.asarray(descriptions["label"]), list(knowledge), teacher)

    def check_covers(self, labels: set[int], names: dict[int, str] | None = None) -> None:
        """Raises if a category the images use has no description to pair with."""
        empty = sorted(set(labels) - set(self.rows_of))
        if empty:
            shown = [f"{label} ({names[label]})" if names and label in names else str(label) for label in empty]
            raise ValueError(
                f"empty description pool for categories {', '.join(shown)}: nothing to pair their images with"
            )


@dataclass
class AugmentConfig:
    """Image augmentation of the pre-training view (PIL; colour jitter only applies to colour images)."""

    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    color_jitter: float = 0.3
    enabled: bool = True


def random_resized_crop(image: Image.Image, rng: np.random.Generator, scale, ratio) -> Image.Image:
    """Crops a random area (fraction `scale`, aspect `ratio`) of the image, as torchvision's RandomResizedCrop."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return image.crop((left, top, left + w, top + h))
    return image


def augment_image(image: Image.Image, rng: np.random.Generator, config: AugmentConfig) -> Image.Image:
    """One augmented view of `image`."""
    if not config.enabled:
        return image
    image = random_resized_crop(image, rng, config.crop_scale, config.crop_ratio)
    if config.flip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if config.color_jitter > 0 and image.mode == "RGB":
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhance(image).enhance(1 + rng.uniform(-config.color_jitter, config.color_jitter))
    return image


def to_pil(image: Any) -> Image.Image:
    """A PIL image from what a `datasets` Image column or a source yields."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    if isinstance(image, dict) and image.get("bytes") is not None:
        import io

        return Image.open(io.BytesIO(image["bytes"]))
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def lm_sentence_tokens(tokenizer: Any, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentences in a frozen LM's tokens, each ending in eos (so generation learns to stop), right-padded; + mask."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError("the LM tokenizer has neither an eos nor a sep token to end sentences with")
    rows = [ids[: max_length - 1] + [eos] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
    return ids, mask


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    rng: np.random.Generator,
    probability: float,
    mask_id: int,
    vocab_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of one row: `probability` of the non-special tokens; of those 80% [MASK], 10% random, 10% kept."""
    draws = torch.from_numpy(rng.random((3, input_ids.shape[0])))
    chosen = (draws[0] < probability) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    to_mask = chosen & (draws[1] < 0.8)
    to_random = chosen & ~to_mask & (draws[2] < 0.5)
    masked[to_mask] = mask_id
    random_tokens = torch.from_numpy(rng.integers(0, vocab_size, input_ids.shape[0]))
    masked[to_random] = random_tokens[to_random]
    return masked, labels


class DistillationCollator:
    """Builds `WVLPForPreTraining` batches from rows with `image`, `label` and `image_id`."""

    def __init__(
        self,
        processor: WVLPProcessor,
        pool: DescriptionPool,
        seed: int = 0,
        max_length: int = 32,
        knowledge_max_length: int = 32,
        num_knowledge: int = 2,
        mlm_probability: float = 0.15,
        augment: AugmentConfig | None = None,
        augmented_view: bool = False,
        teacher_temperature: float | None = None,
        lm_tokenizer: Any = None,
        lm_max_length: int = 48,
        text_indices: bool = False,
    ):
        self.processor = processor
        self.pool = pool
        self.seed = seed
        self.epoch = 0  # set by the trainer at every epoch start
        self.max_length = max_length
        self.knowledge_max_length = knowledge_max_length
        self.num_knowledge = num_knowledge if pool.knowledge else 0
        self.mlm_probability = mlm_probability
        self.augment = augment or AugmentConfig()
        self.augmented_view = augmented_view
        self.teacher_temperature = teacher_temperature if pool.teacher_embeddings is not None else None
        self.lm_tokenizer, self.lm_max_length = lm_tokenizer, lm_max_length  # generation_loss: the frozen LM's tokens
        self.text_indices = text_indices  # + the pool rows of the texts, which the locked-text step looks up
        tokenizer = processor.tokenizer
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no [MASK] token: MLM needs one")
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def row_rng(self, image_id: str) -> np.random.Generator:
        """The random stream of one row in this epoch."""
        return np.random.default_rng([self.seed, self.epoch, stable_hash(str(image_id))])

    def _tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        # Fixed-length padding: every process of a distributed run then gathers tensors of the same shape.
        # The tokenizer directly: padding slots of the knowledge are empty strings, which the processor refuses.
        tokens = self.processor.tokenizer(
            texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collates rows into a batch; see the module docstring for what it holds."""
        rngs = [self.row_rng(row["image_id"]) for row in rows]
        labels = [int(row["label"]) for row in rows]
        picks = []
        for label, rng in zip(labels, rngs):
            candidates = self.pool.rows_of.get(label)
            if candidates is None or len(candidates) == 0:
                raise ValueError(f"empty description pool for category {label}: nothing to pair its image with")
            picks.append(int(rng.choice(candidates)))
        images = [to_pil(row["image"]).convert("RGB") for row in rows]
        batch = {
            "pixel_values": self.processor.image_processor(
                [augment_image(image, rng, self.augment) for image, rng in zip(images, rngs)]
            )["pixel_values"],
            "category_ids": torch.tensor(labels, dtype=torch.long),
        }
        if self.augmented_view:
            batch["pixel_values_aug"] = self.processor.image_processor(
                [augment_image(image, rng, self.augment) for image, rng in zip(images, rngs)]
            )["pixel_values"]
        texts = [self.pool.texts[i] for i in picks]
        batch.update(self._tokenize(texts, self.max_length))
        if self.lm_tokenizer is not None:
            batch["lm_input_ids"], batch["lm_attention_mask"] = lm_sentence_tokens(
                self.lm_tokenizer, texts, self.lm_max_length
            )

        special = torch.isin(batch["input_ids"], self.special_ids) | (batch["attention_mask"] == 0)
        masked = [
            mask_tokens(ids, spec, rng, self.mlm_probability, self.mask_id, self.vocab_size)
            for ids, spec, rng in zip(batch["input_ids"], special, rngs)
        ]
        batch["mlm_input_ids"] = torch.stack([m for m, _ in masked])
        batch["mlm_labels"] = torch.stack([lab for _, lab in masked])

        if self.num_knowledge:
            k = self.num_knowledge
            sentences, valid = [], []
            for i in picks:
                retrieved = list(self.pool.knowledge[i][:k])
                valid.append([True] * len(retrieved) + [False] * (k - len(retrieved)))
                sentences.extend(retrieved + [""] * (k - len(retrieved)))
            tokens = self._tokenize(sentences, self.knowledge_max_length)
            batch["knowledge_input_ids"] = tokens["input_ids"].view(len(rows), k, -1)
            batch["knowledge_attention_mask"] = tokens["attention_mask"].view(len(rows), k, -1)
            batch["knowledge_valid"] = torch.tensor(valid, dtype=torch.bool)
            if self.text_indices:
                ids = [(self.pool.knowledge_ids[i][:k] + [-1] * k)[:k] for i in picks]
                batch["knowledge_index"] = torch.tensor(ids, dtype=torch.long)
        if self.text_indices:
            batch["description_index"] = torch.tensor(picks, dtype=torch.long)

        if self.teacher_temperature:
            embeddings = torch.from_numpy(self.pool.teacher_embeddings[picks])
            batch["teacher_targets"] = torch.softmax(embeddings @ embeddings.t() / self.teacher_temperature, dim=1)
        return batch
