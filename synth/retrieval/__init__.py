"""Retrieval over a user corpus, for any graph: BM25 (default) or dense embeddings, cached on disk.

Typical use in a graph's ``build()``::

    index = open_index(corpus_path, kind="bm25")      # built once, then loaded from the cache
    hits = await index.asearch("who wrote hamlet", top_k=3)
    [h.as_dict() for h in hits]                       # JSON-native: id, title, text, score, rank

``corpus_path`` may be a ``.jsonl``/``.parquet`` file of ``{id, title, text}`` rows, a ``datasets`` folder,
``hf:NAME[:SPLIT]``, or an index folder written by ``synth index build``.
"""

from synth.retrieval.corpus import CorpusError, Passage, corpus_fingerprint, load_corpus
from synth.retrieval.indexes import (
    DEFAULT_DENSE_MODEL,
    KINDS,
    BM25Retriever,
    DenseRetriever,
    Hit,
    Retriever,
)
from synth.retrieval.step import QueryHits, RankedHit, retrieve_passages
from synth.retrieval.store import (
    build_index,
    cache_root,
    is_index,
    load_index,
    open_index,
    save_index,
)

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "KINDS",
    "BM25Retriever",
    "CorpusError",
    "DenseRetriever",
    "Hit",
    "Passage",
    "QueryHits",
    "RankedHit",
    "Retriever",
    "build_index",
    "cache_root",
    "corpus_fingerprint",
    "is_index",
    "load_corpus",
    "load_index",
    "open_index",
    "retrieve_passages",
    "save_index",
]
