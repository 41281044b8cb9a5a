"""SMART (Yue et al. 2024): intent reconstruction -> retrieval -> fact location -> response.

Control flow (no loop)::

    reconstruct ─> retrieve ─┬─ Send(locate, passage) × N ─> collect ─┬─> respond_with_facts ──> END
                             └─ (no passage) ───────────────> collect └─> respond_without_facts ─> END

* ``reconstruct``: the Intent Reconstructor turns the instruction into at most ``max_queries`` queries.
* ``retrieve``: every query is searched (one batch, off the event loop) for its ``top_k`` passages;
  a passage found by several queries is kept once, in order of first appearance.
* ``locate``: one Fact Locator call per passage, fanned out in parallel with LangGraph ``Send``. A rule
  check rejects spans not contained in the passage (whitespace normalised); the passage then counts as
  irrelevant and the reason is recorded. A failed locator call also makes its passage irrelevant (the
  row goes on).
* ``respond_*``: the Response Generator answers with the relevant passages' spans, or without any.
  Citations of passages that were not relevant are dropped (and recorded).

When the seed row has gold ``answers`` the exported answer is the gold one (SMART's data construction),
the model's own answer is kept as ``model_answer``, and ``exact_match`` (SQuAD-normalised) is the
environment-based filter signal. The index is opened once per ``build()``, from the on-disk cache.
"""

from __future__ import annotations

import operator
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graphs.smart.exports import EXPORTS, exact_match
from graphs.smart.result import SmartResult
from roles.smart import (
    FACT_LOCATOR,
    INTENT_RECONSTRUCTOR,
    MAX_QUERIES,
    RESPONSE_GENERATOR,
    ROLES,
    Response,
    SearchQueries,
)
from synth.graph import BaseState, ModelSet, SynthGraph, failed, unless_stopped
from synth.qa import gold_answers
from synth.retrieval import CorpusError, open_index, retrieve_passages
from synth.trajectory import Step

NO_CORPUS = (
    "graph 'smart' needs a corpus to retrieve from: pass --corpus PATH to `synth run` (or -O corpus=PATH); "
    "PATH is a .jsonl/.parquet of id/title/text rows, a datasets folder, or an index folder from "
    "`synth index build`"
)


class SmartSeed(BaseModel):
    """A seed row: ``question`` (or ``instruction`` + optional ``input``) and optional gold ``answers``."""

    model_config = ConfigDict(extra="allow")
    question: str | None = Field(default=None, min_length=1)
    instruction: str | None = Field(default=None, min_length=1)
    input: str = ""
    answers: list[str] | None = None

    @field_validator("answers", mode="before")
    @classmethod
    def _one_answer_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_a_request(self) -> SmartSeed:
        if not (self.question or self.instruction):
            raise ValueError("missing field 'question' (or 'instruction'): the user's request to answer")
        return self


class SmartState(BaseState, total=False):
    queries: list[str]
    retrieval: list[dict[str, Any]]
    passages: list[dict[str, Any]]
    located: Annotated[list[dict[str, Any]], operator.add]
    branch: str
    response: dict[str, Any]


def instruction_of(seed: Mapping[str, Any]) -> str:
    text = str(seed.get("question") or seed.get("instruction") or "")
    return f"{text}\n\n{seed['input']}" if seed.get("input") else text


def build(
    models: ModelSet,
    *,
    corpus: str | None = None,
    top_k: int = 3,
    retriever: str = "bm25",
    max_queries: int = 3,
    embedding_model: str | None = None,
) -> Any:
    """The compiled SMART graph; opens (building and caching on first use) the corpus index."""
    if not corpus:
        raise CorpusError(NO_CORPUS)
    if top_k < 1:
        raise ValueError(f"smart option top_k must be >= 1, got {top_k}")
    if not 1 <= max_queries <= MAX_QUERIES:
        raise ValueError(f"smart option max_queries must be between 1 and {MAX_QUERIES}, got {max_queries}")
    index = open_index(corpus, retriever, model=embedding_model)

    async def reconstruct(state: SmartState) -> dict[str, Any]:
        step = await INTENT_RECONSTRUCTOR.run(
            models.for_role(INTENT_RECONSTRUCTOR.name),
            node="reconstruct",
            instruction=instruction_of(state["seed"]),
            max_queries=max_queries,
        )
        if not step.ok:
            return failed(step)
        asked = step.output_as(SearchQueries).queries
        queries = clean_queries(asked, max_queries)
        if len(queries) < len(asked):
            step.meta["queries_dropped"] = len(asked) - len(queries)
        if not queries:
            step.ok, step.error_reason, step.error = False, "rule", "no non-empty query"
            return failed(step)
        return {"steps": [step.as_state()], "queries": queries}

    async def retrieve(state: SmartState) -> dict[str, Any]:
        return await retrieve_passages(index, state["queries"], top_k)

    async def locate(payload: dict[str, Any]) -> dict[str, Any]:
        seed, passage = payload["seed"], payload["passage"]
        step = await FACT_LOCATOR.run(
            models.for_role(FACT_LOCATOR.name),
            node="locate",
            instruction=instruction_of(seed),
            passage={k: passage[k] for k in ("id", "title", "text")},
            answers=gold_answers(seed),
        )
        step.meta["passage_id"] = passage["id"]
        return {"steps": [step.as_state()], "located": [verdict(step, passage, payload["index"])]}

    async def collect(state: SmartState) -> dict[str, Any]:
        relevant = any(v["relevant"] for v in state.get("located", []))
        return {"branch": "with_facts" if relevant else "without_facts"}

    async def respond(state: SmartState, with_facts: bool) -> dict[str, Any]:
        facts = relevant_facts(state) if with_facts else []
        step = await RESPONSE_GENERATOR.run(
            models.for_role(RESPONSE_GENERATOR.name),
            node=f"respond_{state['branch']}",
            instruction=instruction_of(state["seed"]),
            facts=facts,
        )
        if not step.ok:
            return failed(step)
        known = {f["id"] for f in facts}
        output = step.output_as(Response)
        cited = list(dict.fromkeys(output.citations))
        response = {
            "answer": output.answer,
            "citations": [c for c in cited if c in known],
            "dropped_citations": [c for c in cited if c not in known],
        }
        return {"steps": [step.as_state()], "response": response}

    async def respond_with_facts(state: SmartState) -> dict[str, Any]:
        return await respond(state, True)

    async def respond_without_facts(state: SmartState) -> dict[str, Any]:
        return await respond(state, False)

    # Routers are async: LangGraph runs a sync router in a thread pool (a thread hop per edge per row).
    async def fan_out(state: SmartState) -> list[Send] | str:
        passages = state.get("passages") or []
        if not passages:
            return "collect"
        return [
            Send("locate", {"seed": state["seed"], "passage": p, "index": i}) for i, p in enumerate(passages)
        ]

    async def branch(state: SmartState) -> Literal["respond_with_facts", "respond_without_facts"]:
        return "respond_with_facts" if state["branch"] == "with_facts" else "respond_without_facts"

    graph = StateGraph(SmartState)
    graph.add_node("reconstruct", reconstruct)
    graph.add_node("retrieve", retrieve)
    graph.add_node("locate", locate)  # type: ignore[arg-type]
    graph.add_node("collect", collect)
    graph.add_node("respond_with_facts", respond_with_facts)
    graph.add_node("respond_without_facts", respond_without_facts)
    graph.add_edge(START, "reconstruct")
    graph.add_conditional_edges("reconstruct", unless_stopped("retrieve", END), ["retrieve", END])
    graph.add_conditional_edges("retrieve", fan_out, ["locate", "collect"])
    graph.add_edge("locate", "collect")
    graph.add_conditional_edges("collect", branch, ["respond_with_facts", "respond_without_facts"])
    graph.add_edge("respond_with_facts", END)
    graph.add_edge("respond_without_facts", END)
    return graph.compile()


def clean_queries(queries: list[str], limit: int) -> list[str]:
    """Strip, drop empties and case-insensitive duplicates, keep the first ``limit``."""
    seen: dict[str, str] = {}
    for query in queries:
        text = " ".join(query.split())
        if text and text.lower() not in seen:
            seen[text.lower()] = text
    return list(seen.values())[:limit]


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def span_in_passage(span: str, passage: str) -> bool:
    """Whether ``span`` occurs in ``passage`` up to whitespace (runs collapsed; also spacing around
    tokenised punctuation, as in NQ's ``Röntgen , of Germany`` vs ``Röntgen, of Germany``)."""
    wanted, text = _normalise(span), _normalise(passage)
    if not wanted:
        return False
    return wanted in text or wanted.replace(" ", "") in text.replace(" ", "")


def verdict(step: Step, passage: dict[str, Any], index: int) -> dict[str, Any]:
    """The Fact Locator's verdict after the rule check: relevant only with spans all in the passage."""
    record: dict[str, Any] = {
        "index": index,
        "passage_id": passage["id"],
        "ok": step.ok,
        "claimed_relevant": False,
        "relevant": False,
        "spans": [],
        "rejected_spans": [],
        "reason": "",
    }
    if not step.ok or step.output is None:
        record["reason"] = f"locator failed ({step.error_reason}): {step.error}"
        return record
    claimed, spans = bool(step.output["relevant"]), list(step.output["spans"])
    record["claimed_relevant"] = claimed
    if not claimed:
        record["reason"] = "judged irrelevant"
    elif not spans:
        record["reason"] = "judged relevant but gave no span"
    else:
        rejected = [s for s in spans if not span_in_passage(s, passage["text"])]
        if rejected:
            record["rejected_spans"] = rejected
            record["reason"] = f"{len(rejected)} of {len(spans)} spans not in the passage"
        else:
            record.update(relevant=True, spans=[_normalise(s) for s in spans])
    return record


def relevant_facts(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_id = {p["id"]: p for p in state.get("passages", [])}
    located = sorted(state.get("located", []), key=operator.itemgetter("index"))
    return [
        {"id": v["passage_id"], "title": by_id[v["passage_id"]]["title"], "spans": v["spans"]}
        for v in located
        if v["relevant"]
    ]


def to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
    seed = state["seed"]
    golds = gold_answers(seed)
    by_index = {v["index"]: v for v in state.get("located", [])}
    facts = []
    for index, passage in enumerate(state.get("passages", [])):
        v = by_index[index]
        facts.append(
            {
                "passage": {k: passage[k] for k in ("id", "title", "text")},
                "queries": passage["queries"],
                **{
                    k: v[k]
                    for k in ("relevant", "spans", "claimed_relevant", "rejected_spans", "reason", "ok")
                },
            }
        )
    response = state["response"]
    model_answer = response["answer"]
    matched = [g for g in golds if exact_match(model_answer, [g])]
    em = bool(matched) if golds else None
    result = {
        "instruction": instruction_of(seed),
        "queries": state.get("queries", []),
        "retrieval": state.get("retrieval", []),
        "facts": facts,
        "branch": state.get("branch", ""),
        "answer": (matched or golds)[0] if golds else model_answer,
        "model_answer": model_answer,
        "answers": golds,
        "exact_match": em,
        "citations": response["citations"],
        "dropped_citations": response["dropped_citations"],
    }
    scores = {
        "exact_match": None if em is None else float(em),
        "passages": len(facts),
        "relevant_passages": sum(f["relevant"] for f in facts),
        "rejected_span_passages": sum(bool(f["rejected_spans"]) for f in facts),
        "locator_failures": sum(not f["ok"] for f in facts),
    }
    return {"result": result, "scores": scores}


GRAPH = SynthGraph(
    name="smart",
    description="SMART: intent reconstruction, retrieval over a corpus, fact location, response (2024).",
    version="1",
    seed_model=SmartSeed,
    roles=ROLES,
    build=build,
    to_trajectory=to_trajectory,
    exports=EXPORTS,
    result_model=SmartResult,
    report_section="graphs.smart.report:SmartSection",
)
