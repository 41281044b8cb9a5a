"""``synth eval qa --attack ATM_RUN_OR_EXPORT``: exact match and F1 with and without fabricated passages.

Every question is answered twice by the same model: on its **clean** context (the row's passages) and on
its **attacked** context (the clean passages perturbed, with the attacker's fabrications inserted), both
exactly as the ATM graph built them (``graphs/atm/graph.py``). The attack source is

* an ATM run folder (``synth run atm ...``): its ok trajectories give the question, every gold answer, the
  clean passages and the attacked context, which are rendered in any ``--style`` (``atm``, the default, is
  the generator role's own prompt, the format ATM's ``sft`` / ``mito`` exports train on); or
* a ``mito`` export (``synth export RUN -f mito``): its ``prompt`` / ``adv_prompt`` message lists are sent
  as they are (style ``atm`` only) and ``answer`` is the single gold answer.

Generation and scoring are :mod:`train.eval`'s (model folders in-process, specs through their client,
SQuAD normalisation). Writes ``predictions.jsonl`` (per row: the answer, raw text, EM and F1 under both
contexts, and whether the attack flipped a correct answer) and ``summary.json``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from train.errors import TrainError
from train.eval import Prompt, _slug, make_generator, score, write_results
from train.qa import Style, build_messages

CONTEXTS = ("clean", "attacked")


def load_attack(source: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The attacked QA rows of an ATM run folder or a ``mito`` export (see the module doc)."""
    if (source / "records.sqlite").is_file():
        rows = _from_run(source)
    elif source.exists():
        rows = _from_export(source)
    else:
        raise TrainError(
            f"--attack {source} does not exist; pass an ATM run folder (synth run atm ... --out RUN) or a "
            "mito export (synth export RUN -f mito -o DIR)"
        )
    if not rows:
        raise TrainError(f"--attack {source} holds no usable rows (no ok ATM trajectory / no mito row)")
    return rows[:limit] if limit else rows


def _from_run(folder: Path) -> list[dict[str, Any]]:
    from graphs.atm.seed import doc
    from graphs.atm.trajectory import AtmResult
    from synth.engine.store import RunStore

    store = RunStore(folder)
    try:
        graph = (store.read_config() or {}).get("graph")
        if graph != "atm":
            raise TrainError(
                f"--attack {folder} is a run of graph {graph!r}, not 'atm': fabricated passages come from "
                "an ATM run (synth run atm ...)"
            )
        rows = []
        for record in store.iter_records():
            if record.status != "ok" or not record.result.get("attacked_context"):
                continue
            result = record.result_as(AtmResult)
            rows.append(
                {
                    "id": record.id,
                    "question": result.question,
                    "answers": list(result.answers),
                    "clean": [doc(p.model_dump()) for p in result.passages],
                    "attacked": [doc(d) for d in result.attacked_context],
                }
            )
        return rows
    finally:
        store.close()


def _question_of(prompt: list[dict[str, Any]]) -> str:
    found = re.findall(r"^Question: (.*)$", prompt[-1]["content"], re.M) if prompt else []
    return found[-1].strip() if found else ""


def _from_export(folder: Path) -> list[dict[str, Any]]:
    from train.data import load_rows

    dataset = load_rows(folder)
    missing = {"prompt", "adv_prompt", "answer"} - set(dataset.column_names)
    if missing:
        raise TrainError(
            f"--attack {folder} has columns {dataset.column_names}, not a mito export's prompt / adv_prompt "
            f"/ answer (missing {', '.join(sorted(missing))}); export one with `synth export RUN -f mito`, "
            "or pass the ATM run folder itself"
        )
    return [
        {
            "id": str(row.get("id") or number),
            "question": _question_of(row["prompt"]),
            "answers": [row["answer"]],
            "prompts": {"clean": row["prompt"], "attacked": row["adv_prompt"]},
        }
        for number, row in enumerate(dataset, 1)
    ]


def attack_prompts(row: dict[str, Any], context: str, style: Style) -> Prompt:
    """The prompt of ``row`` under ``context``: rendered in ``style``, or an export's stored messages."""
    if "prompts" in row:
        if style != "atm":
            raise TrainError(
                f"a mito export carries prompts already rendered in the ATM generator's format; use --style "
                f"atm (not {style}), or pass the ATM run folder to render its passages in another style"
            )
        return [dict(m) for m in row["prompts"][context]], None
    return build_messages(row["question"], row[context], style)


def _rate(records: list[dict[str, Any]], context: str, key: str) -> float:
    return round(sum(r[context][key] for r in records) / len(records), 4)


def run_attack_eval(
    model: str,
    attack: Path,
    *,
    out: Path | None = None,
    limit: int | None = None,
    style: Style = "atm",
    max_new_tokens: int = 32,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Evaluate ``model`` on the clean and the attacked context of every row of ``attack``."""
    rows = load_attack(attack, limit)
    prompts = [attack_prompts(r, c, style) for c in CONTEXTS for r in rows]
    started = time.monotonic()
    generator, folder = make_generator(model, style, max_new_tokens, batch_size)
    raw = generator.generate(prompts)  # one call: clean and attacked prompts share batches
    del generator
    seconds = time.monotonic() - started
    records = []
    for index, row in enumerate(rows):
        record: dict[str, Any] = {k: row[k] for k in ("id", "question", "answers")}
        for offset, context in enumerate(CONTEXTS):
            record[context] = score(raw[offset * len(rows) + index], row["answers"])
            if context in row:
                record[context]["passages"] = [p["id"] for p in row[context]]
        record["misled"] = bool(record["clean"]["em"] and not record["attacked"]["em"])
        records.append(record)
    out = out or Path("evals") / f"{_slug(model)}--attack-{_slug(attack.name)}"
    n = len(records)
    summary = {
        "model": model,
        "model_folder": str(folder) if folder else None,
        "attack": str(attack),
        "rows": n,
        "exact_match": _rate(records, "clean", "em"),
        "f1": _rate(records, "clean", "f1"),
        "attacked_exact_match": _rate(records, "attacked", "em"),
        "attacked_f1": _rate(records, "attacked", "f1"),
        "misled": round(sum(r["misled"] for r in records) / n, 4),
        "style": style,
        "passages": "clean vs attacked (ATM fabrications inserted)",
        "max_new_tokens": max_new_tokens,
        "seconds": round(seconds, 2),
    }
    return write_results(out, records, summary)
