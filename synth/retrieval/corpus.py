"""Reading a user corpus of passages (``id``, ``title``, ``text``) and fingerprinting it.

A corpus is read in full and checked before any index is built, so a bad row fails the build with its
``file:line`` rather than surfacing as a missing passage mid-run. The fingerprint is a content hash: it
keys the on-disk index cache, so an edited corpus never reuses a stale index, and an unchanged one built
by another run (or by ``synth index build``) is reused without rebuilding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth.errors import SynthError

#: Fields every passage needs; ``title`` may be absent (it is then empty).
REQUIRED_FIELDS = ("id", "text")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


class CorpusError(SynthError):
    """A corpus is missing, unreadable or has a malformed passage; the message names file:line."""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit. ``id`` is a string even when the corpus stores numbers."""

    id: str
    title: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "text": self.text}

    @property
    def indexed_text(self) -> str:
        """What the retrievers see: the title helps (BM25 recall@3 on the shared NQ corpus 0.85 -> 0.94)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def load_corpus(source: str | Path) -> list[Passage]:
    """All passages of ``source``: ``.jsonl``/``.parquet``, a ``datasets`` folder, or ``hf:NAME[:SPLIT]``.

    Raises :class:`CorpusError` naming ``file:line`` for a row without ``id``/``text``, a non-string text,
    or a duplicate id (both lines).
    """
    passages: list[Passage] = []
    seen: dict[str, str] = {}
    for where, row in _rows(source):
        passage = _passage(where, row)
        if passage.id in seen:
            raise CorpusError(
                f"{where}: duplicate passage id {passage.id!r} (first at {seen[passage.id]}); "
                "passage ids must be unique: fix or drop one of the rows"
            )
        seen[passage.id] = where
        passages.append(passage)
    if not passages:
        raise CorpusError(f"corpus {source} has no passages; give a file with id/title/text rows")
    return passages


def corpus_fingerprint(source: str | Path) -> str:
    """A content hash of the corpus: file bytes, every file of a folder, or a hub dataset's fingerprint."""
    hasher = hashlib.sha256()
    hub = _hub_name(source)
    if hub is not None:
        hasher.update(f"hf:{_load_hub(*hub)._fingerprint}".encode())
        return hasher.hexdigest()[:24]
    path = _existing(source)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        hasher.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()[:24]


def _passage(where: str, row: Any) -> Passage:
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: a passage must be a JSON object, got {type(row).__name__}")
    missing = [name for name in REQUIRED_FIELDS if row.get(name) in (None, "")]
    if missing:
        raise CorpusError(
            f"{where}: passage is missing field {', '.join(repr(m) for m in missing)} "
            f"(every passage needs id and text; title is optional); has fields {sorted(row)}"
        )
    pid, text, title = row["id"], row["text"], row.get("title") or ""
    if not isinstance(pid, str | int) or isinstance(pid, bool):
        raise CorpusError(f"{where}: field 'id' must be a string or an integer, got {type(pid).__name__}")
    if not isinstance(text, str) or not isinstance(title, str):
        raise CorpusError(f"{where}: fields 'text' and 'title' must be strings")
    return Passage(str(pid), title, text)


def _rows(source: str | Path) -> Iterator[tuple[str, Any]]:
    hub = _hub_name(source)
    if hub is not None:
        for number, row in enumerate(_load_hub(*hub), start=1):
            yield f"{source}:row {number}", row
        return
    path = _existing(source)
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from _dataset_folder_rows(path)
    elif suffix in JSONL_SUFFIXES:
        yield from _jsonl_rows(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield f"{path}:row {number}", row
    else:
        raise CorpusError(
            f"corpus {path}: unsupported file type {suffix!r}; use .jsonl, .parquet, a datasets folder "
            "(save_to_disk or parquet/jsonl files) or hf:NAME[:SPLIT]"
        )


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None


def _dataset_folder_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import datasets

    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    else:
        try:
            loaded = datasets.load_dataset(str(path), split="train")
        except Exception as exc:
            raise CorpusError(
                f"corpus folder {path} is neither a saved dataset nor a folder of data files ({exc})"
            ) from exc
    for number, row in enumerate(loaded, start=1):
        yield f"{path}:row {number}", row


def _hub_name(source: str | Path) -> tuple[str, str] | None:
    text = str(source)
    if isinstance(source, Path) or not text.startswith("hf:"):
        return None
    name, _, split = text[3:].partition(":")
    return name, split or "train"


def _load_hub(name: str, split: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise CorpusError(f"corpus hf:{name}:{split} could not be loaded: {exc}") from exc


def _existing(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusError(
            f"corpus {path} does not exist; pass a .jsonl/.parquet file, a datasets folder or hf:NAME"
        )
    return path
