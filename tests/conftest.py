import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


def tiny_config_kwargs(**overrides) -> dict:
    """A random-weight WVLP small enough for unit tests (runs in milliseconds)."""
    kwargs = dict(
        vision_config=dict(variant="lite0", image_size=32),
        text_config=dict(
            vocab_size=120,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=64,
        ),
        fusion_layer=1,
        embed_dim=16,
        queue_size=16,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_batch(batch_size: int = 6, length: int = 8, seed: int = 0, knowledge: int = 2, image_size: int = 32) -> dict:
    """A pre-training batch with every optional input (MLM, augmented view, retrieved knowledge)."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 120, (batch_size, length), generator=g)
    input_ids[:, 0] = 1
    attention_mask = torch.ones(batch_size, length, dtype=torch.long)
    attention_mask[0, -2:] = 0
    mlm_labels = torch.full_like(input_ids, -100)
    masked = torch.rand(batch_size, length, generator=g) < 0.3
    masked[:, 0] = False
    masked[:, 2] = True
    mlm_labels[masked] = input_ids[masked]
    mlm_input_ids = input_ids.masked_fill(masked, 4)
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    batch = dict(
        pixel_values=pixel_values,
        input_ids=input_ids,
        attention_mask=attention_mask,
        category_ids=torch.arange(batch_size) % 3,
        mlm_input_ids=mlm_input_ids,
        mlm_labels=mlm_labels,
        pixel_values_aug=pixel_values.flip(-1),
    )
    if knowledge:
        batch["knowledge_input_ids"] = torch.randint(5, 120, (batch_size, knowledge, 6), generator=g)
        batch["knowledge_attention_mask"] = torch.ones(batch_size, knowledge, 6, dtype=torch.long)
        valid = torch.ones(batch_size, knowledge, dtype=torch.bool)
        valid[1, -1] = False
        batch["knowledge_valid"] = valid
    return batch


@pytest.fixture
def tiny_config():
    from modeling_wvlp import WVLPConfig

    return WVLPConfig(**tiny_config_kwargs())
