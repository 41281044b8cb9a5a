"""Retrieval as a graph step: search every query, keep each passage once, record a model-free Step.

Used by every graph that retrieves (SMART for its queries, ATM for the question), so their ``retrieve``
steps and ``retrieval`` / ``passages`` state read the same.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from synth.retrieval.indexes import Retriever
from synth.trajectory import Step, Usage


class RankedHit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    score: float
    rank: int


class QueryHits(BaseModel):
    """One query's hits as a graph's ``retrieval`` result lists them (typed reading)."""

    model_config = ConfigDict(extra="forbid")
    query: str
    hits: list[RankedHit]


async def retrieve_passages(index: Retriever, queries: list[str], top_k: int) -> dict[str, Any]:
    """Search every query; dedupe passages across queries. Recorded as a model-free retriever step."""
    started = time.perf_counter()
    results = await index.asearch_many(queries, top_k)
    passages: dict[str, dict[str, Any]] = {}
    retrieval = []
    for number, (query, hits) in enumerate(zip(queries, results, strict=True)):
        retrieval.append(
            {"query": query, "hits": [{"id": h.passage.id, "score": h.score, "rank": h.rank} for h in hits]}
        )
        for hit in hits:
            entry = passages.setdefault(hit.passage.id, {**hit.passage.as_dict(), "queries": []})
            entry["queries"].append(number)
    latency = time.perf_counter() - started
    step = Step(
        role="knowledge_retriever",
        node="retrieve",
        inputs={"queries": queries, "top_k": top_k},
        output={"retrieval": retrieval},
        model=f"{index.kind}:{index.source}",
        latency_s=latency,
        usage=Usage(latency_s=latency),
        meta={"passages": len(passages)},
    )
    return {"steps": [step.as_state()], "retrieval": retrieval, "passages": list(passages.values())}
