"""Integration: the embedded default built from the packaged EfficientNet-Lite0 and MiniLM weights."""

import pytest
import torch

from wvlp.modeling import build_default_model, build_default_processor
from wvlp.modeling.pretrained_assets import minilm_path

pytestmark = pytest.mark.slow

SENTENCES = [
    "a photo of a cat",
    "a small kitten sitting on a sofa",
    "a red sports car",
    "an ankle boot made of leather",
    "a pullover with long sleeves",
    "the trousers are dark blue denim",
    "a sandal with thin straps",
    "a handbag with a golden clasp",
    "a dress with a floral pattern",
    "a coat hanging on a hook",
    "sneakers on a running track",
    "a shirt with buttons and a collar",
    "a t-shirt with a printed logo",
    "two dogs playing in the snow",
    "a bowl of soup on a wooden table",
    "an old bridge over a river",
    "WordNet gloss: a garment worn on the upper body",
    "Espresso is a concentrated coffee",
    "a",
    "x " * 60,
]


@pytest.fixture(scope="module")
def default_pretraining():
    torch.manual_seed(0)
    # No queue: a queue filling up with copies of the one batch changes the targets' entropy, not the fit.
    return build_default_model(for_pretraining=True, queue_size=0)


@pytest.fixture(scope="module")
def processor():
    return build_default_processor()


def test_text_mode_reproduces_sentence_transformers(default_pretraining, processor):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    model = default_pretraining.wvlp.eval()
    tokens = processor(text=SENTENCES, padding="longest", max_length=256, return_tensors="pt")
    with torch.no_grad():
        text = model.text_model.encode(tokens["input_ids"], tokens["attention_mask"])
    got = torch.nn.functional.normalize(text.pooler_output, dim=-1)
    cosine = (got * expected).sum(-1)
    assert cosine.min().item() > 0.9999, cosine


def fixed_batch(processor, batch_size: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    categories = torch.arange(batch_size) % 4
    texts = [f"a {['shirt', 'boot', 'bag', 'dress'][c]} photographed on a plain background" for c in categories]
    images = [(torch.rand(28, 28, generator=g) * 255).to(torch.uint8).numpy() for _ in range(batch_size)]
    batch = dict(processor(images=images, text=texts, max_length=16, return_tensors="pt"))
    masked = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    masked[:, 2] = True
    batch["mlm_labels"] = batch["input_ids"].masked_fill(~masked, -100)
    batch["mlm_input_ids"] = batch["input_ids"].masked_fill(masked, processor.tokenizer.mask_token_id)
    know = processor(text=[f"a {t.split()[1]} is a kind of clothing" for t in texts] * 1, max_length=12)
    batch["knowledge_input_ids"] = know["input_ids"][:, None]
    batch["knowledge_attention_mask"] = know["attention_mask"][:, None]
    batch["category_ids"] = categories
    batch.pop("token_type_ids", None)
    return batch


def test_default_model_fits_a_fixed_batch_and_ema_follows_momentum(default_pretraining, processor):
    model = default_pretraining.train()
    batch = fixed_batch(processor)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    history = []
    for step in range(20):
        torch.manual_seed(step)
        out = model(**batch)
        history.append({k: v.item() for k, v in out.items() if k.endswith("_loss")})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step == 0:
            before = {n: p.detach().clone() for n, p in model.teacher.named_parameters()}
            model.momentum_update()
            m = model.config.pretraining_config.momentum
            for name, student in model.wvlp.named_parameters():
                expected = m * before[name] + (1 - m) * student.detach()
                torch.testing.assert_close(dict(model.teacher.named_parameters())[name], expected, msg=name)
        else:
            model.momentum_update()
    assert set(history[0]) == {"itc_loss", "itm_loss", "mlm_loss", "knowledge_loss"}
    for term in history[0]:
        assert history[-1][term] < history[0][term], (term, [h[term] for h in history])
