"""ATM (Zhu et al., EMNLP 2024): an attacker writes misleading passages, the generator answers under attack.

Control flow (no loop; one ATM iteration's data construction)::

    prepare ─┬─ Send(attack, i) × N ─> score ─> contextualize ─ Send(answer, clean | attacked) ─> finish
             └─ (no passage) ─> END

* ``prepare``: the seed's own passages (``passage`` or ``ctxs``), then, with a corpus, the question's
  ``top_k`` retrieved passages (duplicates of the seed's dropped). The gold passages are the seed's own
  (only those flagged ``hasanswer`` when the seed's ``ctxs`` carry the flag), else the top retrieved
  passage that contains an answer string. The attacker's example passage is the first gold one (else the
  first passage).
* ``attack``: N attacker samples in parallel (LangGraph ``Send``); each carries its sample index, which
  is part of the call-cache key, so the N samples stay distinct when the cache is on. A failed sample is
  recorded and left out; the row fails only when every sample failed.
* ``score``: each fabrication's score is the generator model's mean token negative log-likelihood of the
  first gold answer, as its reply to the generator prompt holding that one fabricated document (exact
  log-probabilities: the embedded model, or a vLLM server with ``?logprobs=vllm``). The gold passage's own
  score is recorded as a reference. Higher NLL = more misleading.
* ``contextualize``: the attacked context = the clean passages perturbed (shuffle / drop / duplicate by
  the ``*_ratio`` options, never dropping a gold passage) with the ``inject`` most misleading fabrications
  (default: all) inserted at random places. Draws are seeded by the ``seed`` option and the question.
* ``answer``: the generator answers on the clean and on the attacked context, in parallel; ``finish``
  fails the row if either failed. Exact match against the gold answers is kept for both.

A backend without exact log-probabilities for the generator is refused when the graph is built.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping
from typing import Annotated, Any

from autogen_core.models import SystemMessage, UserMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphs.atm.exports import EXPORTS
from graphs.atm.perturb import Ratios, insert_at_random, perturb, row_rng
from graphs.atm.seed import (
    AtmSeed,
    doc,
    example_passage,
    mark_gold,
    merge_passages,
    seed_passages,
)
from graphs.atm.trajectory import AtmResult, to_trajectory
from roles.atm import GENERATOR, ROLES, attacker_with, generator_inputs, short_answer
from synth.errors import SynthError
from synth.graph import BaseState, ModelSet, SynthGraph, unless_stopped
from synth.models.base import ScoreRequest, SupportsLogprobs
from synth.qa import gold_answers
from synth.retrieval import open_index, retrieve_passages
from synth.trajectory import Step, Usage

NO_PASSAGES = (
    "the row has no passage: give the seed a 'passage' (or 'ctxs' list), or pass --corpus PATH to "
    "`synth run` (or -O corpus=PATH) so graph 'atm' retrieves passages for the question"
)


class AtmState(BaseState, total=False):
    retrieval: list[dict[str, Any]]
    passages: list[dict[str, Any]]
    sft_context: str
    fabrications: Annotated[list[dict[str, Any]], operator.add]
    ranking: list[dict[str, Any]]
    gold_nll: float | None
    attacked_context: list[dict[str, Any]]
    perturbation: dict[str, Any]
    answers: Annotated[list[dict[str, Any]], operator.add]


def scorer_of(models: ModelSet) -> Any:
    """The generator's client, which must return exact log-probabilities (else a clear build error)."""
    client = models.for_role(GENERATOR.name)
    if not isinstance(client, SupportsLogprobs):
        spec = models.spec_for(GENERATOR.name) or type(client).__name__
        raise SynthError(
            f"graph 'atm' ranks fabrications by the log-probabilities of role '{GENERATOR.name}', but its "
            f"model '{spec}' cannot return them. For a vLLM server add ?logprobs=vllm to the spec "
            f"(e.g. --model {GENERATOR.name}=openai:MODEL@http://host:8000/v1?logprobs=vllm); or give the "
            f"role the embedded model (--model {GENERATOR.name}=local:gemma-3-270m). The attacker may keep "
            "any backend."
        )
    return client


def _check(n_fabrications: int, top_k: int, inject: int | None, closed_book_ratio: float) -> None:
    if n_fabrications < 1:
        raise ValueError(
            f"atm option n_fabrications must be >= 1 (2 or more make DPO pairs), got {n_fabrications}"
        )
    if top_k < 1:
        raise ValueError(f"atm option top_k must be >= 1, got {top_k}")
    if inject is not None and inject < 1:
        raise ValueError(f"atm option inject must be >= 1 (or null: all fabrications), got {inject}")
    if not 0.0 <= closed_book_ratio <= 1.0:
        raise ValueError(f"atm option closed_book_ratio must be between 0 and 1, got {closed_book_ratio}")


def build(
    models: ModelSet,
    *,
    corpus: str | None = None,
    top_k: int = 3,
    retriever: str = "bm25",
    embedding_model: str | None = None,
    n_fabrications: int = 3,
    temperature: float = 0.8,
    top_p: float = 0.95,
    inject: int | None = None,
    shuffle_ratio: float = 0.0,
    drop_ratio: float = 0.0,
    duplicate_ratio: float = 0.0,
    closed_book_ratio: float = 0.3,
    seed: int = 0,
) -> Any:
    """The compiled ATM graph; refuses a generator backend without log-probabilities."""
    _check(n_fabrications, top_k, inject, closed_book_ratio)
    ratios = Ratios(shuffle=shuffle_ratio, drop=drop_ratio, duplicate=duplicate_ratio)
    scorer = scorer_of(models)
    attacker = attacker_with(temperature, top_p)
    index = open_index(corpus, retriever, model=embedding_model) if corpus else None

    async def prepare(state: AtmState) -> dict[str, Any]:
        row = state["seed"]
        update: dict[str, Any] = {}
        passages = seed_passages(row)
        if index is not None:
            found = await retrieve_passages(index, [row["question"]], top_k)
            update.update(steps=found["steps"], retrieval=found["retrieval"])
            passages = merge_passages(passages, found["passages"])
        if not passages:
            return {**update, "error": NO_PASSAGES, "stop_reason": NO_PASSAGES}
        mark_gold(passages, gold_answers(row))
        closed = row_rng(seed, "sft", row["question"]).random() < closed_book_ratio
        return {**update, "passages": passages, "sft_context": "closed_book" if closed else "with_documents"}

    async def fan_out(state: AtmState) -> list[Send] | str:
        if state.get("stop_reason"):
            return END
        example = example_passage(state["passages"])
        return [
            Send("attack", {"seed": state["seed"], "example": example, "sample": i})
            for i in range(n_fabrications)
        ]

    async def attack(payload: dict[str, Any]) -> dict[str, Any]:
        row, sample = payload["seed"], payload["sample"]
        step = await attacker.run(
            models.for_role(attacker.name),
            node="attack",
            sample=sample,
            question=row["question"],
            answers=gold_answers(row),
            example={k: payload["example"][k] for k in ("title", "text")},
        )
        step.meta["sample"] = sample
        output = step.output or {}
        fabrication = {"sample": sample, "ok": step.ok, "title": output.get("title", ""),
                       "text": output.get("text", ""), "error": step.error}  # fmt: skip
        return {"steps": [step.as_state()], "fabrications": [fabrication]}

    async def score(state: AtmState) -> dict[str, Any]:
        made = sorted((f for f in state["fabrications"] if f["ok"]), key=operator.itemgetter("sample"))
        if not made:
            reason = f"every one of the {n_fabrications} attacker samples failed; see the attacker steps"
            return {"error": reason, "stop_reason": reason}
        return await score_fabrications(scorer, models.spec_for(GENERATOR.name), state, made)

    async def contextualize(state: AtmState) -> dict[str, Any]:
        rng = row_rng(seed, "attack", state["seed"]["question"])
        passages = state["passages"]
        gold = [i for i, p in enumerate(passages) if p["gold"]]
        perturbed = perturb(len(passages), gold, ratios, rng)
        ranked = sorted(state["ranking"], key=lambda r: -r["nll"])[: inject or None]
        by_sample = {f["sample"]: f for f in state["fabrications"]}
        fakes = [
            {"kind": "fabrication", "sample": r["sample"], "id": f"fabrication-{r['sample']}",
             "title": by_sample[r["sample"]]["title"], "text": by_sample[r["sample"]]["text"]}
            for r in ranked
        ]  # fmt: skip
        kept = [{"kind": "passage", "index": i, **doc(passages[i])} for i in perturbed.order]
        attacked = insert_at_random(kept, fakes, rng)
        return {"attacked_context": attacked, "perturbation": perturbed.as_dict()}

    async def both_contexts(state: AtmState) -> list[Send]:
        clean = [doc(p) for p in state["passages"]]
        attacked = [doc(d) for d in state["attacked_context"]]
        return [
            Send("answer", {"seed": state["seed"], "context": name, "passages": docs})
            for name, docs in (("clean", clean), ("attacked", attacked))
        ]

    async def answer(payload: dict[str, Any]) -> dict[str, Any]:
        context = payload["context"]
        step = await GENERATOR.run(
            models.for_role(GENERATOR.name),
            node=f"answer_{context}",
            **generator_inputs(payload["seed"]["question"], payload["passages"]),
        )
        reply = {"context": context, "ok": step.ok, "answer": short_answer(step.raw or "") if step.ok else "",
                 "error": step.error}  # fmt: skip
        return {"steps": [step.as_state()], "answers": [reply]}

    async def finish(state: AtmState) -> dict[str, Any]:
        failed = [a for a in state.get("answers", []) if not a["ok"]]
        if not failed:
            return {}
        reason = "; ".join(
            f"role 'generator' failed on the {a['context']} context: {a['error']}" for a in failed
        )
        return {"error": reason, "stop_reason": reason}

    graph = StateGraph(AtmState)
    graph.add_node("prepare", prepare)
    graph.add_node("attack", attack)  # type: ignore[arg-type]
    graph.add_node("score", score)
    graph.add_node("contextualize", contextualize)
    graph.add_node("answer", answer)  # type: ignore[arg-type]
    graph.add_node("finish", finish)
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", fan_out, ["attack", END])
    graph.add_edge("attack", "score")
    graph.add_conditional_edges("score", unless_stopped("contextualize", END), ["contextualize", END])
    graph.add_conditional_edges("contextualize", both_contexts, ["answer"])
    graph.add_edge("answer", "finish")
    graph.add_edge("finish", END)
    return graph.compile()


def generator_messages(question: str, passages: list[dict[str, Any]]) -> list[Any]:
    """The generator's prompt (system + user) for these passages, as AutoGen messages."""
    system, user = GENERATOR.render(**generator_inputs(question, passages))
    return [SystemMessage(content=system), UserMessage(content=user, source="user")]


async def score_fabrications(
    scorer: Any, spec: str, state: Mapping[str, Any], made: list[dict[str, Any]]
) -> dict[str, Any]:
    """One batched scoring call: each fabrication alone, then the example (gold) passage as a reference."""
    row = state["seed"]
    question, gold = row["question"], gold_answers(row)[0]
    docs = [[{"title": f["title"], "text": f["text"]}] for f in made] + [[example_passage(state["passages"])]]
    requests = [ScoreRequest(generator_messages(question, d), gold) for d in docs]
    inputs = {"question": question, "continuation": gold, "samples": [f["sample"] for f in made]}
    step = Step(
        role=GENERATOR.name, node="score", model=spec, template_hash=GENERATOR.template_hash, inputs=inputs
    )
    started = time.perf_counter()
    try:
        nll = await scorer.continuation_nll(requests)
    except Exception as exc:  # the backend failed after its retries: the row fails, the step is kept
        step.ok, step.error_reason, step.error = False, "backend", f"{type(exc).__name__}: {exc}"[:1500]
        nll = None
    step.latency_s = time.perf_counter() - started
    step.usage = Usage(calls=1, latency_s=step.latency_s)
    if nll is None:
        reason = f"scoring the fabrications failed: {step.error}"
        return {"steps": [step.as_state()], "error": reason, "stop_reason": reason}
    ranking = [{"sample": f["sample"], "nll": float(v)} for f, v in zip(made, nll[:-1], strict=True)]
    step.output = {"nll": {str(r["sample"]): r["nll"] for r in ranking}, "gold_nll": float(nll[-1])}
    step.meta["mode"] = "logprob"
    return {"steps": [step.as_state()], "ranking": ranking, "gold_nll": float(nll[-1])}


GRAPH = SynthGraph(
    name="atm",
    description="ATM: attacker fabrications ranked by generator NLL; generator on clean vs attacked context.",
    version="1",
    seed_model=AtmSeed,
    roles=ROLES,
    build=build,
    to_trajectory=to_trajectory,
    exports=EXPORTS,
    result_model=AtmResult,
    report_section="graphs.atm.report:AtmSection",
)
