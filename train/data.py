"""Training data: read a ``synth export`` folder (or a .jsonl/.parquet file), recognise its format, and
fingerprint it.

Parquet exports are read with pyarrow directly rather than ``load_dataset``: it writes no cache, keeps the
export's typed schema, and an empty export (which ``load_dataset`` refuses) gets a clear error instead.
The fingerprint (sha256 over the files) is saved with every run so a resumed run can refuse to continue
on different data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from train.errors import TrainError

Format = Literal["messages", "prompt_completion", "text", "preference", "mito", "prompt"]
#: Columns that TRL reads besides the format's own (per-row template variables, e.g. SMART short rows'
#: ``assistant_header``).
PASSTHROUGH = ("chat_template_kwargs",)
_COLUMNS: dict[Format, tuple[str, ...]] = {
    "preference": ("prompt", "chosen", "rejected"),
    "mito": ("prompt", "adv_prompt", "answer"),
    "prompt_completion": ("prompt", "completion"),
    "messages": ("messages",),
    "text": ("text",),
    "prompt": ("prompt",),
}
#: The formats each command trains on (a prompt-only command also takes any other format with a prompt).
ALLOWED: dict[str, tuple[Format, ...]] = {
    "sft": ("messages", "prompt_completion", "text"),
    "dpo": ("preference",),
    "reward": ("preference",),
    "grpo": ("prompt",),
    "ppo": ("prompt",),
    "mito": ("mito",),
}
_HOW = {
    "sft": "a `messages` export (synth export RUN -f sft -o DIR) or prompt/completion (-f sft-short)",
    "dpo": "a preference export with prompt/chosen/rejected (synth export RUN -f dpo -o DIR)",
    "reward": "a preference export with prompt/chosen/rejected (synth export RUN -f dpo -o DIR)",
    "grpo": "a prompt column, plus gold `answers` for rule rewards (synth export RUN -f rl -o DIR)",
    "ppo": "a prompt column, plus gold `answers` for rule rewards (synth export RUN -f rl -o DIR)",
    "mito": "MITO rows with prompt (clean context), adv_prompt (attacked context) and answer",
}


def data_files(path: Path) -> list[Path]:
    """The data files of a dataset folder or file: parquet first, else jsonl/json."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TrainError(
            f"dataset {path} does not exist; pass a folder written by `synth export` "
            "or a .jsonl/.parquet file"
        )
    for pattern in ("*.parquet", "*.jsonl", "*.json"):
        files = sorted(p for p in path.rglob(pattern) if not any(part.startswith(".") for part in p.parts))
        if files:
            return files
    raise TrainError(
        f"dataset folder {path} has no .parquet/.jsonl files; "
        f"export one with `synth export RUN -f FORMAT -o {path}`"
    )


def numbered_jsonl(file: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of a .jsonl file; a line that is not JSON stops
    with ``file:line`` and the parser's reason. Lines end at newlines only (never at a U+2028 inside a
    string, as ``str.splitlines`` would)."""
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{file}:{number} is not valid JSON: {exc.msg}") from None


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    return [row for _, row in numbered_jsonl(file)]


def load_rows(path: str | Path, limit: int | None = None) -> Any:
    """All rows of a dataset folder/file as a ``datasets.Dataset`` (first ``limit`` rows if given)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    files = data_files(Path(path))
    if files[0].suffix == ".parquet":
        dataset = Dataset(pa.concat_tables([pq.read_table(f) for f in files]))
    else:
        dataset = Dataset.from_list([row for f in files for row in _read_jsonl(f)])
    if len(dataset) == 0:
        raise TrainError(
            f"dataset {path} has 0 rows; nothing to train on. `synth export` prints why an export is empty "
            "(e.g. no accepted CoEvol round for dpo); fix the run or choose another format"
        )
    return dataset.select(range(min(limit, len(dataset)))) if limit else dataset


def detect_format(columns: list[str]) -> Format | None:
    """The TRL format of a dataset's columns, preference first (it also has ``prompt``)."""
    for fmt, needed in _COLUMNS.items():
        if all(c in columns for c in needed):
            return fmt
    return None


def prepare(dataset: Any, command: str, where: str) -> tuple[Any, Format]:
    """Keep only the columns TRL reads (ids and metadata would confuse its format detection).

    Prompt-only commands (grpo, ppo) keep every column: reward functions read gold answers, rubrics etc.
    """
    allowed = ALLOWED[command]
    if allowed == ("prompt",) and "prompt" in dataset.column_names:
        return dataset, "prompt"
    fmt = detect_format(dataset.column_names)
    if fmt not in allowed:
        raise TrainError(
            f"dataset {where} has columns {dataset.column_names}, which `synth train {command}` cannot use; "
            f"it needs {_HOW[command]}"
        )
    keep = [c for c in (*_COLUMNS[fmt], *PASSTHROUGH) if c in dataset.column_names]
    return dataset.select_columns(keep), fmt


def is_conversational(dataset: Any, fmt: Format) -> bool:
    """Whether rows hold chat message lists (rendered with the chat template) rather than plain strings."""
    if fmt == "text":
        return False
    first = dataset[0][_COLUMNS[fmt][0]]
    return isinstance(first, list)


def fingerprint(path: str | Path, rows: int) -> dict[str, Any]:
    """sha256 of every data file (and of them together), with the row count: what a run was trained on."""
    files = data_files(Path(path))
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    digests: dict[str, str] = {}
    total = hashlib.sha256()
    for file in files:
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        rel = str(file.relative_to(root))
        digests[rel] = digest.hexdigest()
        total.update(f"{rel}:{digests[rel]}\n".encode())
    return {"path": str(Path(path).resolve()), "sha256": total.hexdigest(), "rows": rows, "files": digests}
