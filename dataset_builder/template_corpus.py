"""A corpus whose descriptions are label templates and WordNet glosses instead of LLM output.

It has the exact layout of a `wvlp describe` corpus, so it serves as the "label templates only" baseline of the study
and as the quick real corpus of tests and benchmarks (which must not wait for an LLM).
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wvlp.data.dataset import write_corpus
from wvlp.data.sources import FashionMNISTSource

PATTERNS = (
    "a photo of a {name}",
    "a {name}, that is {gloss}",
    "{gloss}: a {name}",
    "a product photo of a {name} on a white background",
    "a close-up of a {name} in a shop",
    "someone is wearing or carrying a {name}",
)


def write_template_corpus(
    folder: Path, images_per_split: int | None = 96, extra_knowledge: Sequence[str] = (), cross_llm: bool = False
) -> Path:
    """Writes a Fashion-MNIST template corpus into `folder` (6 descriptions per class; images capped per split).

    `extra_knowledge` sentences are attached to the first description's knowledge (tests of query leakage);
    `cross_llm` adds a `queries/cross_llm` split of one other sentence per class, as a query describer writes.
    """
    from sentence_transformers import SentenceTransformer

    from wvlp.modeling.pretrained_assets import minilm_path

    source = FashionMNISTSource()
    records = []
    for cls in source.classes:
        for i, pattern in enumerate(PATTERNS):
            text = pattern.format(name=cls.prompt_name, gloss=cls.gloss)
            others = [c for c in source.classes if c.label != cls.label]
            knowledge = [
                {"id": f"wordnet:{cls.class_id}", "text": f"{cls.prompt_name}: {cls.gloss}", "score": 0.9},
                {
                    "id": f"wordnet:{others[i % len(others)].class_id}:syn",
                    "text": f"a kind of {cls.prompt_name}",
                    "score": 0.5,
                },
            ]
            records.append(
                dict(
                    description_id=f"{cls.class_id}/p{i}/0",
                    class_id=cls.class_id,
                    class_name=cls.name,
                    label=cls.label,
                    prompt_id=f"p{i}",
                    template=pattern,
                    sample_index=0,
                    llm="wordnet-templates",
                    llm_revision="3.0",
                    decoding={},
                    seed=0,
                    created_at="2026-01-01T00:00:00Z",
                    text=text,
                    raw_text=text,
                    num_tokens=len(text.split()) + 2,
                    knowledge=knowledge[: 1 + i % 2],
                )
            )
    records[0]["knowledge"] = records[0]["knowledge"] + [
        {"id": f"text:extra:{i}", "text": text, "score": 0.1} for i, text in enumerate(extra_knowledge)
    ]
    embedder = SentenceTransformer(str(minilm_path()), device="cpu")
    embeddings = embedder.encode([r["text"] for r in records], normalize_embeddings=True)
    for record, embedding in zip(records, embeddings):
        record["teacher_embedding"] = np.asarray(embedding, dtype=np.float16)
    return write_corpus(
        folder,
        source,
        records,
        records,
        teacher_dim=embeddings.shape[1],
        card_text="A test corpus.",
        card_metadata={"license": "mit"},
        max_images_per_split=images_per_split,
        queries=[
            {
                **r,
                "description_id": f"{r['class_id']}/query",
                "text": f"a picture in which one sees a {r['class_name']}",
            }
            for r in records[:: len(PATTERNS)]
        ]
        if cross_llm
        else None,
    )
