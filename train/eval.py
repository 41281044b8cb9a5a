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
from train.qa import Style, build_messages, exact_match, extract_answer, f1_score, load_qa

Prompt = tuple[list[dict[str, Any]], str | None]
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


class FolderGenerator:
    """Greedy, batched generation from a model folder; a LoRA adapter is merged into its base on load."""

    def __init__(self, folder: Path, max_new_tokens: int, batch_size: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from synth.chat_template import ensure_chat_template

        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        adapter = (folder / "adapter_config.json").is_file()
        if adapter:
            from peft import PeftModel

            base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
            base_model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
            model: Any = PeftModel.from_pretrained(base_model, str(folder)).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
        self.model = model.to(device).eval()
        self.tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(str(folder)))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        import torch

        from synth.chat_template import render_prompt

        outputs: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [
                render_prompt(self.tokenizer, m, assistant_header=h)
                for m, h in prompts[start : start + self.batch_size]
            ]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.model.device
            )
            with torch.no_grad():
                generated = self.model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            new = generated[:, batch["input_ids"].shape[1] :]
            outputs += self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return outputs


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
        from autogen_core.models import SystemMessage, UserMessage

        chat = [
            SystemMessage(content=m["content"])
            if m["role"] == "system"
            else UserMessage(content=m["content"], source="user")
            for m in messages
        ]
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


def make_generator(model: str, style: Style, max_new_tokens: int, batch_size: int) -> tuple[Any, Path | None]:
    """The generator for ``model`` (a folder: in-process; a spec: its client) and the folder, if any."""
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
        return FolderGenerator(folder, max_new_tokens, batch_size), folder
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
) -> dict[str, Any]:
    """Evaluate ``model`` on the QA rows in ``data``; write predictions.jsonl + summary.json to ``out``.

    Passages: ``retrieve_k == 0`` -> closed book; ``corpus`` -> the top ``retrieve_k`` (default 3) retrieved
    passages; otherwise each row's own ``passage``/``ctxs``.
    """
    if retrieve_k is not None and retrieve_k < 0:
        raise TrainError(f"--retrieve must be >= 0 (0 = closed book), got {retrieve_k}")
    if retrieve_k and corpus is None:
        raise TrainError(
            f"--retrieve {retrieve_k} needs --corpus (the passages to search); without --corpus each row's "
            "own passage/ctxs are used, and --retrieve 0 is closed book"
        )
    rows = load_qa(data, limit)
    if corpus is not None and retrieve_k != 0:
        retrieved = retrieve(corpus, [r["question"] for r in rows], retrieve_k or 3)
        for row, passages in zip(rows, retrieved, strict=True):
            row["passages"] = passages
    elif retrieve_k == 0:
        for row in rows:
            row["passages"] = []
    prompts = [build_messages(r["question"], r["passages"], style) for r in rows]
    started = time.monotonic()
    generator, folder = make_generator(model, style, max_new_tokens, batch_size)
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
        "style": style,
        "passages": "closed-book"
        if retrieve_k == 0
        else (f"retrieved top-{retrieve_k or 3} from {corpus}" if corpus else "from the data"),
        "max_new_tokens": max_new_tokens,
        "seconds": round(seconds, 2),
    }
    return write_results(out, records, summary)
