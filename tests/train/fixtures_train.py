"""Shared data and model builders for the train tests: a tiny offline model and tiny export folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tiny import build_tiny_model

PASSAGE = "Hamlet is a tragedy written by William Shakespeare around 1600."
QUERIES = '{"queries": ["author of hamlet"]}'
VERDICT = '{"relevant": true, "spans": ["Hamlet is a tragedy written by William Shakespeare around 1600."]}'
ANSWER = '{"answer": "William Shakespeare", "citations": ["p1"]}'


def smart_long_row(i: int = 0) -> dict[str, Any]:
    """A SMART-long-shaped transcript: user, named assistant, retrieved passage, named assistant."""
    return {
        "id": f"long-{i}",
        "messages": [
            {"role": "user", "content": f"Who wrote Hamlet? ({i})", "name": None},
            {"role": "assistant", "name": "Intent Reconstructor", "content": QUERIES},
            {"role": "retrieval", "name": None, "content": PASSAGE},
            {"role": "assistant", "name": "Response Generator", "content": ANSWER},
        ],
    }


def smart_short_row(i: int = 0) -> dict[str, Any]:
    """A SMART-short-shaped row: the transcript so far as prompt, one role segment as completion."""
    long = smart_long_row(i)["messages"]
    return {
        "id": f"short-{i}",
        "role": "fact_locator",
        "prompt": [*long[:3]],
        "completion": [{"role": "assistant", "name": "Fact Locator", "content": VERDICT}],
        "chat_template_kwargs": {"assistant_header": "Fact Locator"},
    }


def dpo_row(i: int = 0) -> dict[str, Any]:
    return {
        "id": f"pair-{i}",
        "prompt": [{"role": "user", "content": f"Name a colour ({i})."}],
        "chosen": [{"role": "assistant", "content": "Red."}],
        "rejected": [{"role": "assistant", "content": "I cannot answer that."}],
    }


def write_dataset(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """A dataset folder like `synth export` writes (data/*.parquet), through datasets' parquet writer."""
    from datasets import Dataset

    (folder / "data").mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def corpus_texts() -> list[str]:
    texts = [PASSAGE, QUERIES, VERDICT, ANSWER, "Who wrote Hamlet? Name a colour. Red. I cannot answer that."]
    return [*texts, "### User\n### Assistant\n### Retrieval\n### Fact Locator\n### Response Generator\n"]


def tiny_model(folder: Path) -> Path:
    """A 2-layer Llama + BPE tokenizer with the project's plain chat template (offline, ~1 s)."""
    return build_tiny_model(folder, corpus_texts())


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def base_settings(model: Path, data: Path, out: Path, **extra: Any) -> dict[str, Any]:
    """A 2-step, CPU, fp32 config that keeps runs to a few seconds."""
    return {
        "model": str(model),
        "data": str(data),
        "output_dir": str(out),
        "max_steps": 2,
        "batch_size": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "warmup": 0,
        "max_length": 256,
        "lora": {"r": 4, "alpha": 8},
        "device": "cpu",
        "precision": "fp32",  # auto would pick bf16 on AMX CPUs; tests/train/test_precision.py covers it
        **extra,
    }
