"""Retrieval queries that no training LLM wrote, and the check that a query set never leaked into training.

The held-out descriptions of a corpus come from the same LLM (and prompts) as its training descriptions, so
retrieval with them partly measures how well the model learned that LLM's style. Two other kinds of query:
- *cross-LLM*: descriptions of the same classes written by another describer (`wvlp describe`'s `query_describer`),
  stored in the corpus's `queries` config;
- *CuPL*: the GPT-3 descriptions CuPL (Pratt et al., 2023) wrote for the ImageNet classes that are the same garment
  or object as a Fashion-MNIST class, mapped through WordNet (`CUPL_CLASSES`). The same sentences are a source of
  the knowledge index, so a corpus evaluated on them must be described with `knowledge.holdout_query_sets: [cupl]`.

A query set must share no sentence (after `normalize_text`) with the training descriptions or the knowledge
sentences: `check_leakage` fails naming the overlap.
"""

from collections.abc import Iterable, Mapping, Sequence

from wvlp.data.knowledge.corpus import load_corpus, normalize_text

# Fashion-MNIST class -> CuPL (open_clip ImageNet) class names of the same thing, by WordNet:
# T-shirt = jersey/T-shirt (n03595614), Trouser ~ jean (n03594734, a kind of trousers), Pullover ~ sweatshirt
# (n04370456) and cardigan (n02963159, both sweaters), Dress ~ gown (n03450230, a long dress), Coat ~ trench coat
# (n04479046), fur coat (n03404251) and lab coat (n03617480), Sandal = sandal (n04133789), Sneaker = running shoe
# (n04120489, "sneaker" in open_clip), Bag ~ purse (n04026417), backpack (n02769748) and mailbag (n03709823,
# "messenger bag"), Ankle boot ~ cowboy boot (n03124170, the only boot class). Shirt has no ImageNet class.
CUPL_CLASSES: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("T-shirt",),
    "Trouser": ("jeans",),
    "Pullover": ("sweatshirt", "cardigan"),
    "Dress": ("gown",),
    "Coat": ("trench coat", "fur coat", "lab coat"),
    "Sandal": ("sandal",),
    "Sneaker": ("sneaker",),
    "Bag": ("purse", "backpack", "messenger bag"),
    "Ankle boot": ("cowboy boot",),
}


def cupl_queries(label_names: Sequence[str], mapping: Mapping[str, Sequence[str]] = CUPL_CLASSES) -> list[dict]:
    """CuPL sentences of the mapped classes as `{"id", "text", "label", "cupl_class"}` rows (CLIP templates dropped).

    `label_names` is the label space of the images (index = label); classes absent from `mapping` get no query.
    """
    unknown = sorted(set(mapping) - set(label_names))
    if unknown:
        raise ValueError(f"CuPL class mapping names {unknown}, which are not among the labels {list(label_names)}")
    label_of = {cupl: label_names.index(name) for name, cupls in mapping.items() for cupl in cupls}
    rows = []
    for sentence in load_corpus(["cupl"]):
        cupl_class = sentence.id.split(":")[1]  # ids are cupl:<classname>:<index>
        if cupl_class in label_of:
            rows.append(
                {"id": sentence.id, "text": sentence.text, "label": label_of[cupl_class], "cupl_class": cupl_class}
            )
    missing = sorted(set(label_of) - {row["cupl_class"] for row in rows})
    if missing:
        raise ValueError(f"the CuPL file has no sentences for the mapped classes {missing}")
    return rows


def check_leakage(name: str, queries: Iterable[str], **forbidden: Iterable[str]) -> None:
    """Raises when a query of set `name` equals (normalised) a sentence of any `forbidden` collection, naming it."""
    queries = list(queries)
    normalised = {normalize_text(q): q for q in queries}
    for where, sentences in forbidden.items():
        overlap = sorted({normalised[key] for key in map(normalize_text, sentences) if key in normalised})
        if overlap:
            shown = "; ".join(repr(s) for s in overlap[:3])
            raise ValueError(
                f"query set {name!r} shares {len(overlap)} of its {len(queries)} sentences with the {where.replace('_', ' ')}"
                f", e.g. {shown}: queries must be text the model never trained on"
            )


__all__ = ["CUPL_CLASSES", "check_leakage", "cupl_queries"]
