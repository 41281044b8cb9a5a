"""ATM's export formats: attacker preference pairs, MITO records, and the generator's SFT mix.

Built from ``trajectory.result`` (see ``graphs.atm.trajectory``), never by re-rendering templates:

* ``atm-dpo``: the standard conversational DPO columns. ``prompt`` is the attacker's prompt exactly as it
  was sent (system + user), ``chosen`` the most misleading fabrication (highest generator NLL of the gold
  answer), ``rejected`` the least; each completion is the attacker's JSON reply (``{"title", "text"}``),
  the format the attacker role produces, so a trained attacker drops back into the graph.
* ``mito``: ``prompt`` = the generator prompt with the clean context, ``adv_prompt`` = the same with the
  attacked context, ``answer`` = the gold answer (the MITO loss: CE on ``answer | prompt`` plus a KL term
  between the two prompts' token distributions).
* ``sft``: the generator's SFT data: ``messages`` = prompt + the gold answer. Each row is closed-book
  (no documents) or with its clean documents, drawn when the row ran with probability ``closed_book_ratio``
  (default 0.3, the paper's 30/70 mix), seeded by the ``seed`` option and the question.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from synth.dataset.formats import dpo_features, sft_features
from synth.graph import ExportFormat
from synth.trajectory import Trajectory


def _reply(fabrication: Mapping[str, Any]) -> list[dict[str, str]]:
    content = json.dumps({"title": fabrication["title"], "text": fabrication["text"]}, ensure_ascii=False)
    return [{"role": "assistant", "content": content}]


def dpo_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    result = trajectory.result
    if result.get("chosen") is None or not result.get("attacker_prompt"):
        return
    by_sample = {f["sample"]: f for f in result["fabrications"]}
    yield {
        "id": trajectory.id,
        "prompt": result["attacker_prompt"],
        "chosen": _reply(by_sample[result["chosen"]]),
        "rejected": _reply(by_sample[result["rejected"]]),
    }


def mito_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    result = trajectory.result
    if result.get("clean_prompt") and result.get("attacked_prompt"):
        yield {
            "id": trajectory.id,
            "prompt": result["clean_prompt"],
            "adv_prompt": result["attacked_prompt"],
            "answer": result["gold_answer"],
        }


def sft_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    result = trajectory.result
    closed = result.get("sft_context") == "closed_book"
    prompt = result.get("closed_book_prompt") if closed else result.get("clean_prompt")
    if prompt:
        yield {
            "id": trajectory.id,
            "messages": [*prompt, {"role": "assistant", "content": result["gold_answer"]}],
        }


def mito_features() -> Any:
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    return Features(
        {"id": Value("string"), "prompt": messages, "adv_prompt": messages, "answer": Value("string")}
    )


_PAIRS = "prompt/chosen/rejected: attacker prompt, most vs least misleading fabrication (generator NLL)"
_NO_PAIR = "no row has two fabrications with different NLL scores (needs -O n_fabrications >= 2)"
EXPORTS = {
    "atm-dpo": ExportFormat("atm-dpo", _PAIRS, dpo_rows, dpo_features, empty_reason=_NO_PAIR),
    "dpo": ExportFormat("dpo", "alias of atm-dpo", dpo_rows, dpo_features, empty_reason=_NO_PAIR),
    "mito": ExportFormat(
        "mito",
        "prompt (clean context) / adv_prompt (attacked context) / answer: generator records for MITO",
        mito_rows,
        mito_features,
    ),
    "sft": ExportFormat(
        "sft",
        "messages: generator prompt (closed-book or clean documents, -O closed_book_ratio) -> gold answer",
        sft_rows,
        sft_features,
    ),
}
