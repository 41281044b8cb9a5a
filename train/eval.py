"""``synth eval qa``: exact match and F1 of a model on QA rows, closed-book, with given passages, or with
passages retrieved from a corpus.

``--model`` is either a model folder (a ``synth train`` run folder, its ``adapter/``, ``model/`` or
``merged/``, any HF folder, or the built-in ``gemma-3-270m``) — generated in-process with greedy decoding —
or a ``synth`` model spec (``openai:MODEL@URL``, ``local:PATH``, ``replay:FILE``) called through
:func:`synth.models.make_client`. Both render prompts with the plain chat format (see :mod:`train.qa`).

Writes ``predictions.jsonl`` (one row per question) and ``summary.json`` into the output folder.
:mod:`train.eval_attack` (``--attack``) reuses :func:`make_generator` and :func:`score` to answer each
question on an ATM run's clean and attacked contexts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from train.errors import TrainError
from train.fewshot import few_shot_messages, select_examples
from train.generation import FolderGenerator, Prompt
from train.qa import Style, build_messages, exact_match, extract_answer, f1_score, load_qa
from train.stats import score_intervals

_SPEC = re.compile(r"^(openai|local|replay):", re.IGNORECASE)


# -- models ----------------------------------------------------------------------------------------------
def resolve_folder(model: str) -> Path | None:
    """The model folder ``model`` names, or None when it is a model spec (``backend:...``)."""
    from synth.models.local.convert import BUILTIN_MODELS, model_path

    if model in BUILTIN_MODELS:
        return model_path(model)
    path = Path(model).expanduser()
    if path.is_dir():
        result = path / "result.json"
        if result.is_file():  # a synth train run folder: its final model
            final = json.loads(result.read_text(encoding="utf-8"))
            return Path(final.get("merged") or final.get("model") or final.get("adapter"))
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return path
        raise TrainError(
            f"{path} is neither a model folder (config.json / adapter_config.json) nor a run folder"
        )
    if _SPEC.match(model):
        return None
    raise TrainError(
        f"--model {model!r} is not an existing folder, a built-in model (gemma-3-270m) or a model spec "
        "(openai:MODEL@URL, local:PATH, replay:FILE)"
    )


class SpecGenerator:
    """Generation through a ``synth`` model client (AutoGen message list), concurrent requests."""

    def __init__(self, spec: str, max_new_tokens: int) -> None:
        from synth.models import make_client

        self.client = make_client(spec)
        self.max_new_tokens = max_new_tokens

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        return asyncio.run(self._all(prompts))

    async def _all(self, prompts: Sequence[Prompt]) -> list[str]:
        try:
            return list(await asyncio.gather(*(self._one(m) for m, _ in prompts)))
        finally:
            await self.client.close()

    async def _one(self, messages: list[dict[str, Any]]) -> str:
        from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage

        chat: list[LLMMessage] = []
        for m in messages:  # few-shot prompts carry the examples' answers as assistant turns
            if m["role"] == "system":
                chat.append(SystemMessage(content=m["content"]))
            elif m["role"] == "assistant":
                chat.append(AssistantMessage(content=m["content"], source="assistant"))
            else:
                chat.append(UserMessage(content=m["content"], source="user"))
        args = {"max_tokens": self.max_new_tokens, "temperature": 0.0}
        result = await self.client.create(chat, extra_create_args=args)
        return result.content if isinstance(result.content, str) else json.dumps(result.content, default=str)


# -- retrieval -------------------------------------------------------------------------------------------
def retrieve(corpus: str, questions: Sequence[str], k: int, kind: str = "bm25") -> list[list[dict[str, str]]]:
    """Top-``k`` passages per question from ``corpus`` (an index is built once and cached)."""
    try:
        from synth.retrieval import open_index
    except ImportError as exc:  # pragma: no cover - synth.retrieval ships with the project
        raise TrainError(f"--corpus needs synth.retrieval, which failed to import: {exc}") from exc
    index = open_index(corpus, kind)
    return [
        [{"id": h.passage.id, "title": h.passage.title or "", "text": h.passage.text} for h in hits]
        for hits in index.search_many(list(questions), top_k=k)
    ]


# -- the evaluation --------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-60:] or "model"


def default_out(model: str, data: Path) -> Path:
    return Path("evals") / f"{_slug(model)}--{_slug(data.stem)}"


def write_results(out: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``predictions.jsonl`` (one record per row) and ``summary.json`` (naming it) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    predictions = out / "predictions.jsonl"
    with predictions.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    summary = {**summary, "predictions": str(predictions)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def make_generator(
    model: str, style: Style, max_new_tokens: int, batch_size: int, fast: bool = True, dtype: str = "default"
) -> tuple[Any, Path | None]:
    """The generator for ``model`` (a folder: in-process; a spec: its client) and the folder, if any.
    ``fast=False``: a folder generates in input order, every row to EOS (see :mod:`train.generation`)."""
    folder = resolve_folder(model)
    if folder is None and style == "smart":
        if not model.lower().startswith("local:"):
            raise TrainError(
                "--style smart renders retrieved passages as 'Knowledge Retriever' turns, which an "
                "OpenAI-style "
                "message list cannot carry; use --style plain for this model, or a model folder"
            )
        folder = resolve_folder(model.split(":", 1)[1])
    if folder:
        return FolderGenerator(folder, max_new_tokens, batch_size, fast, dtype), folder
    return SpecGenerator(model, max_new_tokens), None


def score(text: str, answers: Sequence[str]) -> dict[str, Any]:
    """One generation scored: the extracted answer, the raw text, SQuAD exact match and token F1."""
    answer = extract_answer(text)
    return {
        "prediction": answer,
        "raw": text,
        "em": exact_match(answer, answers),
        "f1": round(f1_score(answer, answers), 4),
    }


def attach_passages(rows: list[dict[str, Any]], corpus: str | None, retrieve_k: int | None) -> None:
    """Set each row's ``passages``: ``retrieve_k == 0`` -> none (closed book); ``corpus`` -> the top
    ``retrieve_k`` (default 3) retrieved ones (one batched search); otherwise the row's own."""
    if corpus is not None and retrieve_k != 0:
        retrieved = retrieve(corpus, [r["question"] for r in rows], retrieve_k or 3)
        for row, passages in zip(rows, retrieved, strict=True):
            row["passages"] = passages
    elif retrieve_k == 0:
        for row in rows:
            row["passages"] = []


def run_qa_eval(
    model: str,
    data: Path,
    *,
    out: Path | None = None,
    corpus: str | None = None,
    retrieve_k: int | None = None,
    limit: int | None = None,
    style: Style = "plain",
    max_new_tokens: int = 32,
    batch_size: int = 8,
    few_shot: int = 0,
    few_shot_from: Path | None = None,
    fast: bool = True,
    dtype: str = "default",
) -> dict[str, Any]:
    """Evaluate ``model`` on the QA rows in ``data``; write predictions.jsonl + summary.json to ``out``.

    Passages: see :func:`attach_passages`. ``few_shot`` > 0 puts that many worked examples from
    ``few_shot_from`` (training questions, never evaluation ones) before every prompt, with their passages
    found the same way (:mod:`train.fewshot`).
    """
    if retrieve_k is not None and retrieve_k < 0:
        raise TrainError(f"--retrieve must be >= 0 (0 = closed book), got {retrieve_k}")
    if retrieve_k and corpus is None:
        raise TrainError(
            f"--retrieve {retrieve_k} needs --corpus (the passages to search); without --corpus each row's "
            "own passage/ctxs are used, and --retrieve 0 is closed book"
        )
    if few_shot and few_shot_from is None:
        raise TrainError(f"--few-shot {few_shot} needs --few-shot-from FILE (training QA rows with answers)")
    rows = load_qa(data, limit)
    attach_passages(rows, corpus, retrieve_k)
    shots: dict[str, Any] | None = None
    if few_shot:
        assert few_shot_from is not None
        examples, refused = select_examples(few_shot_from, few_shot, rows)
        attach_passages(examples, corpus, retrieve_k)
        prompts = [few_shot_messages(r["question"], r["passages"], examples, style) for r in rows]
        shots = {"k": few_shot, "from": str(few_shot_from), "ids": [e["id"] for e in examples]}
        shots["refused"] = refused
    else:
        prompts = [build_messages(r["question"], r["passages"], style) for r in rows]
    started = time.monotonic()
    generator, folder = make_generator(model, style, max_new_tokens, batch_size, fast, dtype)
    raw = generator.generate(prompts)
    seconds = time.monotonic() - started
    out = out or default_out(model, data)
    records = [
        {
            "id": row["id"],
            "question": row["question"],
            "answers": row["answers"],
            **score(text, row["answers"]),
            "passages": [p["id"] for p in row["passages"]],
        }
        for row, text in zip(rows, raw, strict=True)
    ]
    n = len(records)
    summary = {
        "model": model,
        "model_folder": str(folder) if folder else None,
        "data": str(data),
        "rows": n,
        "exact_match": round(sum(r["em"] for r in records) / n, 4),
        "f1": round(sum(r["f1"] for r in records) / n, 4),
        "intervals": score_intervals(records),
        "style": style,
        "few_shot": shots,
        "passages": "closed-book"
        if retrieve_k == 0
        else (f"retrieved top-{retrieve_k or 3} from {corpus}" if corpus else "from the data"),
        "max_new_tokens": max_new_tokens,
        "dtype": str(generator.dtype).removeprefix("torch.") if folder else None,
        "seconds": round(seconds, 2),
        "prompts_per_s": round(n / seconds, 3) if seconds > 0 else None,
    }
    return write_results(out, records, summary)
