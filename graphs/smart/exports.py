"""SMART's export formats: the long trajectory, the short (one role turn) trajectories, the answer preference
in context (``dpo-long``) and RL prompts,
over the standard ``dpo`` / ``corrections`` (synth.dataset.reuse) of gold vs a model answer that misses it.

Every format is built from ``trajectory.result`` (see ``graphs.smart.to_trajectory``), never by
re-rendering templates. Each agent segment is an assistant message whose ``name`` is the role's header
(``Intent Reconstructor``, ``Fact Locator``, ``Response Generator``) and whose content is the role's
JSON output *after* the graph's rule checks (a Fact Locator verdict whose spans were rejected is exported
as irrelevant). Each retrieved passage is a ``tool`` message named ``Knowledge Retriever`` placed before
the Fact Locator turn that judges it, so assistant-only loss never trains on retrieved text.

Also here: SQuAD-style exact match, used by the graph as an environment-based filter signal and by
GRPO as a reward over the ``rl`` export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from synth.dataset.formats import user_turn
from synth.dataset.reuse import Candidate, Candidates, standard_exports
from synth.graph import ExportFormat
from synth.metrics import exact_match
from synth.qa import HEADERS, RETRIEVER_HEADER, passage_text
from synth.trajectory import Trajectory


# -- exact match (synth.metrics) -------------------------------------------------------------------
def answer_of(completion: Any) -> str:
    """The answer in a completion: a Response Generator JSON's ``answer``, else the whole text."""
    if isinstance(completion, list):  # conversational: the last message's content
        completion = completion[-1]["content"] if completion else ""
    text = str(completion).strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text
    return str(parsed.get("answer", "")) if isinstance(parsed, dict) else text


def exact_match_reward(completions: Sequence[Any], answers: Sequence[Sequence[str]], **_: Any) -> list[float]:
    """A TRL GRPO reward function over the ``rl`` export: 1.0 for an exact match, else 0.0."""
    return [float(exact_match(answer_of(c), gold)) for c, gold in zip(completions, answers, strict=True)]


# -- transcripts -----------------------------------------------------------------------------------------
def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _agent(role: str, content: Any) -> dict[str, Any]:
    return {"role": "assistant", "name": HEADERS[role], "content": _json(content)}


def long_messages(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The long trajectory: instruction, then every segment in order, retrieved passages as tool turns."""
    messages: list[dict[str, Any]] = [{**user_turn(result["instruction"]), "name": None}]
    messages.append(_agent("intent_reconstructor", {"queries": result["queries"]}))
    for fact in result["facts"]:
        messages.append({"role": "tool", "name": RETRIEVER_HEADER, "content": passage_text(fact["passage"])})
        messages.append(_agent("fact_locator", {"relevant": fact["relevant"], "spans": fact["spans"]}))
    messages.append(
        _agent("response_generator", {"answer": result["answer"], "citations": result["citations"]})
    )
    return messages


def sft_long_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    if trajectory.result.get("queries"):
        yield {"id": trajectory.id, "messages": long_messages(trajectory.result)}


def sft_short_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    """One prompt/completion row per agent segment; the prompt is everything before the segment."""
    if not trajectory.result.get("queries"):
        return
    messages = long_messages(trajectory.result)
    roles = {header: role for role, header in HEADERS.items()}
    turn = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        yield {
            "id": f"{trajectory.id}-{turn}",
            "role": roles[message["name"]],
            "prompt": messages[:index],
            "completion": [message],
            # The plain chat template then ends the prompt with this role's header, not "### Assistant".
            "chat_template_kwargs": {"assistant_header": message["name"]},
        }
        turn += 1


def dpo_long_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    """The Response Generator's turn in its context, gold over the model's answer when that misses gold.

    The prompt is the long trajectory up to the answer (question, queries, retrieved passages, the Fact
    Locator's verdicts) and ends at the ``Response Generator`` header (``chat_template_kwargs``), so the
    preference is learned where the model answers from passages — the prompt ``synth eval qa --style smart``
    asks in — not closed-book like the standard ``dpo``. Both answers are the role's JSON with the same
    citations: only the answer differs."""
    result = trajectory.result
    golds = [str(g) for g in result.get("answers") or []]
    model = str(result.get("model_answer") or "").strip()
    if not result.get("queries") or not golds or not model or exact_match(model, golds):
        return
    messages = long_messages(result)
    rejected = _agent("response_generator", {"answer": model, "citations": result["citations"]})
    yield {
        "id": trajectory.id,
        "prompt": messages[:-1],
        "chosen": [messages[-1]],
        "rejected": [rejected],
        "chat_template_kwargs": {"assistant_header": HEADERS["response_generator"]},
    }


def candidates(trajectory: Trajectory) -> Candidates | None:
    """The gold answer (correct) and the model's own answer, scored by exact match against gold.

    With gold answers, a wrong model answer yields a ``dpo`` pair and a ``corrections`` record (gold over
    the model's answer, closed-book prompt); without gold, the model's answer is the only candidate.
    """
    result = trajectory.result
    if not result.get("instruction") or result.get("model_answer") is None:
        return None
    prompt = [user_turn(result["instruction"])]
    golds = [str(g) for g in result.get("answers") or []]
    model = str(result["model_answer"])
    if not golds:
        return Candidates(prompt=prompt, answers=[Candidate(text=model, score=0.0, label="model")])
    correct = exact_match(model, golds)
    return Candidates(
        prompt=prompt,
        answers=[
            Candidate(text=str(result["answer"]), score=1.0, label="gold", correct=True),
            Candidate(text=model, score=float(correct), label="model", correct=correct),
        ],
        gold=golds,
    )


def rl_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    result = trajectory.result
    if result.get("answers"):
        yield {
            "id": trajectory.id,
            "prompt": [user_turn(result["instruction"])],
            "answers": result["answers"],
        }


# -- schemas ---------------------------------------------------------------------------------------------
def _messages(named: bool = True) -> Any:
    from datasets import List, Value

    fields = {"role": Value("string"), "content": Value("string")}
    return List({**fields, "name": Value("string")} if named else fields)


def long_features() -> Any:
    from datasets import Features, Value

    return Features({"id": Value("string"), "messages": _messages()})


def short_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "id": Value("string"),
            "role": Value("string"),
            "prompt": _messages(),
            "completion": _messages(),
            "chat_template_kwargs": {"assistant_header": Value("string")},
        }
    )


def dpo_long_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "id": Value("string"),
            "prompt": _messages(),
            "chosen": _messages(),
            "rejected": _messages(),
            "chat_template_kwargs": {"assistant_header": Value("string")},
        }
    )


def rl_features() -> Any:
    from datasets import Features, List, Value

    return Features(
        {"id": Value("string"), "prompt": _messages(named=False), "answers": List(Value("string"))}
    )


_LONG = ExportFormat(
    "sft-long",
    "messages: one transcript per row (instruction, every agent segment, retrieved passages as tool turns)",
    sft_long_rows,
    long_features,
)
_GOLD_ONLY = "no ok trajectory has gold answers and a model answer that misses them"
EXPORTS = {
    **standard_exports(candidates, empty_reasons={"dpo": _GOLD_ONLY, "corrections": _GOLD_ONLY}),
    "sft-long": _LONG,
    "sft": ExportFormat("sft", "alias of sft-long", sft_long_rows, long_features),
    "sft-short": ExportFormat(
        "sft-short",
        "prompt/completion: one row per agent segment; the prompt is the transcript before it",
        sft_short_rows,
        short_features,
    ),
    "dpo-long": ExportFormat(
        "dpo-long",
        "prompt/chosen/rejected: the transcript up to the Response Generator (passages included), gold "
        "answer over the model's wrong one",
        dpo_long_rows,
        dpo_long_features,
        empty_reason=_GOLD_ONLY,
    ),
    "rl": ExportFormat(
        "rl",
        "prompt + gold answers for an exact-match reward (graphs.smart.exports.exact_match_reward)",
        rl_rows,
        rl_features,
        empty_reason="no ok trajectory has gold answers (seed field 'answers')",
    ),
}
