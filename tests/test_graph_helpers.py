"""synth.graph's helpers for writing graphs: role nodes, chains and loops, defaults declared once, typed
outputs, each against the loopback server (the graphs themselves are tested in their own files)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from synth.graph import BaseState, ModelSet, SynthGraph, chain, result_from, role_node, seed_fields
from synth.models.spec import make_client
from synth.role import Output, Role, output_model
from synth.trajectory import Step

COUNTER = Role(name="counter", instructions="You count.", prompt="Count {{ word }} after {{ total }}.",
               output=output_model("Count", total=int))  # fmt: skip


class State(BaseState, total=False):
    total: int


@pytest.fixture
async def models(openai_server: Any) -> AsyncIterator[ModelSet]:
    """The scripted server's client, closed after the test (its connection pool with it)."""
    client = make_client(f"openai:scripted@{openai_server.base_url}")
    yield ModelSet(default=client)
    await client.close()


def test_output_model_is_the_class_written_out() -> None:
    class Count(Output):
        total: int

    made = output_model("Count", total=int)
    assert made.model_json_schema() == Count.model_json_schema()
    with pytest.raises(ValidationError):
        made.model_validate({"total": 1, "extra": 2})


def test_output_as_types_a_step_and_refuses_a_failed_one() -> None:
    count = output_model("Count", total=int)
    assert Step(role="counter", output={"total": 3}).output_as(count).total == 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"role 'counter' .* has no output: boom"):
        Step(role="counter", ok=False, error="boom").output_as(count)


def test_seed_fields_requires_non_empty_text_and_keeps_other_fields() -> None:
    seed = seed_fields("word")
    assert seed.model_validate({"word": "tea", "id": 1}).model_dump() == {"word": "tea", "id": 1}
    with pytest.raises(ValidationError):
        seed.model_validate({"word": ""})


def test_options_are_declared_once_in_build() -> None:
    def build(models: ModelSet, *, rounds: int = 2, mode: str = "auto") -> Any:
        return None

    graph = SynthGraph(name="g", description="", seed_model=seed_fields("word"), roles=(), build=build,
                       to_trajectory=result_from("total"))  # fmt: skip
    assert graph.default_options == {"rounds": 2, "mode": "auto"}
    with pytest.raises(ValueError, match="rounds have one default in build"):
        SynthGraph(name="g", description="", seed_model=seed_fields("word"), roles=(), build=build,
                   to_trajectory=result_from("total"), default_options={"rounds": 5})  # fmt: skip


async def test_a_loop_reads_inputs_from_state_then_seed_and_stops_at_max_rounds(
    openai_server: Any, models: ModelSet
) -> None:
    openai_server.script({"after 0": {"content": {"total": 1}}}, default={"content": {"total": 7}})
    node = role_node(COUNTER, models, defaults={"total": 0})
    graph = chain(State, {"count": node}, loop_from="count", max_rounds=3)
    state = await graph.ainvoke({"seed": {"word": "sheep"}, "steps": []})
    assert [s["inputs"] for s in state["steps"]] == [
        {"word": "sheep", "total": 0},
        {"word": "sheep", "total": 1},
        {"word": "sheep", "total": 7},
    ]
    assert state["visits"] == {"count": 3} and state["total"] == 7 and not state.get("error")


async def test_a_loop_exits_when_until_holds(openai_server: Any, models: ModelSet) -> None:
    openai_server.script({"after 0": {"content": {"total": 1}}}, default={"content": {"total": 7}})
    node = role_node(COUNTER, models, defaults={"total": 0})
    graph = chain(State, {"count": node}, loop_from="count", until=lambda s: s["total"] > 5, max_rounds=9)
    state = await graph.ainvoke({"seed": {"word": "sheep"}, "steps": []})
    assert len(state["steps"]) == 2 and state["total"] == 7


async def test_a_failed_call_ends_the_chain_with_the_reason(openai_server: Any, models: ModelSet) -> None:
    openai_server.script({"Count": {"content": "not json"}}, default={"content": "still not json"})
    first = role_node(COUNTER, models, defaults={"total": 0})
    second = role_node(COUNTER, models, node="again", defaults={"total": 0})
    state = await chain(State, {"one": first, "two": second}).ainvoke({"seed": {"word": "x"}, "steps": []})
    assert [s["node"] for s in state["steps"]] == ["counter"]
    assert state["error"].startswith("role 'counter' failed (validation)")
    assert state["stop_reason"] == state["error"]


def test_the_last_node_of_a_chain_ends_it_without_a_router() -> None:
    """A router that can only answer END is a branch evaluation per row for nothing (~13 % of
    LangGraph's cost on a one-node graph); the nodes before it keep theirs (a failure ends the row)."""

    async def node(state: Any) -> dict[str, Any]:
        return {}

    edges = chain(State, {"one": node, "two": node}).get_graph().edges
    assert {(e.source, e.target): e.conditional for e in edges} == {
        ("__start__", "one"): False,
        ("one", "two"): True,
        ("one", "__end__"): True,
        ("two", "__end__"): False,
    }


async def test_a_missing_template_variable_names_role_variable_and_fix(
    openai_server: Any, models: ModelSet
) -> None:
    graph = chain(State, {"count": role_node(COUNTER, models)})
    with pytest.raises(Exception, match=r"role 'counter' reads 'total'.*defaults="):
        await graph.ainvoke({"seed": {"word": "x"}, "steps": []})


def test_chain_refuses_a_loop_without_its_start() -> None:
    with pytest.raises(ValueError, match="loop_from"):
        chain(State, {"count": role_node(COUNTER, ModelSet(default=None))}, max_rounds=2)
    with pytest.raises(ValueError, match="loop_from='nope' is not one of the nodes"):
        chain(State, {"count": role_node(COUNTER, ModelSet(default=None))}, loop_from="nope")
