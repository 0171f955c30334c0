"""Retrieval-augmented knowledge: a sentence corpus (WordNet, CuPL, ImageNet descriptions, own files), MiniLM
embeddings and a faiss inner-product index that never retrieves the query's own text.

`corpus.py` gathers the sentences (`load_corpus`, restricted to the classes' WordNet subtrees by
`relevant_synsets`); `index.py` embeds and searches them (`SentenceEmbedder`, `KnowledgeIndex`,
`retrieve_knowledge`). This package re-exports their public names.
"""

from wvlp.data.knowledge.corpus import (
    DEFAULT_SOURCES,
    CorpusSentence,
    imagenet_wnids,
    load_corpus,
    normalize_text,
    relevant_synsets,
    resolve_classes,
)
from wvlp.data.knowledge.index import KnowledgeIndex, SentenceEmbedder, retrieve_knowledge

__all__ = [
    "DEFAULT_SOURCES",
    "CorpusSentence",
    "KnowledgeIndex",
    "SentenceEmbedder",
    "imagenet_wnids",
    "load_corpus",
    "normalize_text",
    "relevant_synsets",
    "resolve_classes",
    "retrieve_knowledge",
]
