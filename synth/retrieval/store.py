"""Index folders on disk, and the cache that makes a second run reuse the first run's index.

Layout of an index folder (what ``synth index build CORPUS --out DIR`` writes)::

    index.json     {"format": "synth-retrieval-index", "version", "kind", "count", "fingerprint",
                    "source", "params", "built_at"}
    passages.jsonl the passages (id, title, text), in corpus order
    bm25/          bm25s files (kind bm25)      | embeddings.npy  float32, L2-normalised (kind dense)

A folder is written under a temporary name and renamed into place, so a crash never leaves a half
index that a later run would trust. The cache lives in ``$SYNTH_CACHE/indexes`` (default
``~/.cache/synth/indexes``), one folder per (kind, corpus content hash, build parameters); a file lock
keeps two processes from building the same one twice.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from filelock import FileLock

from synth.retrieval.corpus import CorpusError, Passage, corpus_fingerprint, load_corpus
from synth.retrieval.indexes import (
    DEFAULT_DENSE_MODEL,
    KINDS,
    BM25Retriever,
    DenseRetriever,
    Retriever,
    dense_params,
    params_key,
)

INDEX_FORMAT = "synth-retrieval-index"
INDEX_VERSION = 1


def cache_root() -> Path:
    """``$SYNTH_CACHE`` (default ``~/.cache/synth``) / ``indexes``."""
    return Path(os.environ.get("SYNTH_CACHE") or "~/.cache/synth").expanduser() / "indexes"


def check_kind(kind: str) -> type[Retriever]:
    if kind not in KINDS:
        raise CorpusError(f"unknown retriever kind {kind!r}; use one of: {', '.join(KINDS)}")
    return KINDS[kind]


def build_index(source: str | Path, kind: str = "bm25", *, model: str | None = None) -> Retriever:
    """Read ``source`` and build a ``kind`` index in memory (nothing is written)."""
    check_kind(kind)
    passages = load_corpus(source)
    if kind == "dense":
        return DenseRetriever.build(passages, model=model)
    return BM25Retriever.build(passages)


def is_index(path: str | Path) -> bool:
    """Whether ``path`` is an index folder (as opposed to a corpus)."""
    return (Path(path) / "index.json").is_file()


def save_index(
    retriever: Retriever, folder: str | Path, *, source: str | Path = "", fingerprint: str = ""
) -> Path:
    """Write ``retriever`` to ``folder`` atomically (replacing an index already there)."""
    folder = Path(folder)
    if folder.exists() and not is_index(folder) and any(folder.iterdir()):
        raise CorpusError(f"{folder} exists and is not an index folder; choose an empty or new --out folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        retriever.save_arrays(tmp)
        with (tmp / "passages.jsonl").open("w", encoding="utf-8") as handle:
            for passage in retriever.passages:
                handle.write(json.dumps(passage.as_dict(), ensure_ascii=False) + "\n")
        meta = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "kind": retriever.kind,
            "count": len(retriever),
            "fingerprint": fingerprint,
            "source": str(source),
            "params": retriever.params(),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def index_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "index.json"
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{path} is not a readable index description ({exc}); rebuild the index") from exc
    if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
        raise CorpusError(
            f"{folder} holds an index of another format or version "
            f"({meta.get('format')} v{meta.get('version')}); "
            f"rebuild it with `synth index build CORPUS --out {folder}`"
        )
    return meta


def load_index(folder: str | Path) -> Retriever:
    """Read an index folder written by :func:`save_index`."""
    folder = Path(folder)
    meta = index_meta(folder)
    cls = check_kind(meta["kind"])
    with (folder / "passages.jsonl").open(encoding="utf-8") as handle:
        passages = [Passage(**json.loads(line)) for line in handle if line.strip()]
    retriever = cls.load_arrays(folder, passages, meta["params"])
    retriever.source = str(meta.get("source", ""))
    return retriever


def open_index(
    source: str | Path, kind: str = "bm25", *, model: str | None = None, cache_dir: str | Path | None = None
) -> Retriever:
    """The ``kind`` index of ``source``: an index folder as is, else the cached index of that corpus.

    The first call for a corpus builds and caches its index; later calls (other runs, other processes)
    load it. A corpus whose content changed gets a new cache entry.
    """
    check_kind(kind)
    if is_index(source):
        meta = index_meta(source)
        if meta["kind"] != kind:
            raise CorpusError(
                f"{source} is a {meta['kind']} index but retriever={kind} was asked; use retriever="
                f"{meta['kind']} or build one with `synth index build CORPUS --out DIR --kind {kind}`"
            )
        return load_index(source)
    if kind == "dense":
        params = {"model_id": dense_params(model or DEFAULT_DENSE_MODEL)["model_id"]}
    else:
        params = {"bm25s": metadata.version("bm25s")}
    fingerprint = corpus_fingerprint(source)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = f"{kind}-{fingerprint}-{params_key({**params, 'version': INDEX_VERSION})}"
    with FileLock(str(root / f"{key}.lock")):
        folder = root / key
        if is_index(folder):
            return load_index(folder)
        retriever = build_index(source, kind, model=model)
        save_index(retriever, folder, source=source, fingerprint=fingerprint)
        retriever.source = str(source)
        return retriever
