"""The runner's checkpointer (synth/engine/checkpoints.py): what a new row writes, and that resume works.

A new row's input checkpoint, its ``__start__`` writes and its step-0 checkpoint hold nothing but the seed,
so they are kept in memory and step 0 reaches the disk with the first node's writes; every later checkpoint
reaches it with the next node's writes, and the last one never (the record replaces it); with the call
cache on, neither do the last node's writes (``keep_last_writes=False``). These tests drive a
small LangGraph graph straight through the saver (no HTTP): they look at the database while nodes run,
"kill" a row by failing a node, and resume it with a fresh saver as a re-run would.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import operator
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph

from synth.engine.checkpoints import InlineSqliteSaver, replays_history


class State(TypedDict, total=False):
    seed: dict[str, Any]
    steps: Annotated[list[str], operator.add]


class Boom(RuntimeError):
    """Stands in for the process dying inside a node."""


def saved(path: Path, thread_id: str) -> list[int]:
    """Steps of the checkpoints on disk for ``thread_id`` (a separate connection: what a re-run sees)."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT metadata FROM checkpoints WHERE thread_id = ?", (thread_id,)).fetchall()
    return sorted(json.loads(meta)["step"] for (meta,) in rows)


def two_nodes(path: Path, calls: Counter[str], seen: dict[str, list[int]], fail: str | None = None) -> Any:
    """``first`` then ``second``; each records the steps on disk while it runs; ``fail`` raises in a node."""

    def node(name: str) -> Any:
        async def run(state: State) -> dict[str, Any]:
            calls[name] += 1
            seen[name] = saved(path, "row")
            if name == fail:
                raise Boom(name)
            return {"steps": [name]}

        return run

    graph = StateGraph(State)
    graph.add_node("first", node("first"))
    graph.add_node("second", node("second"))
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph.compile()


CONFIG: Any = {"configurable": {"thread_id": "row"}}


async def test_a_new_row_writes_its_first_checkpoint_with_the_first_nodes_result(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path) as saver:
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        saver.expect_new("row")
        final = await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    assert final["steps"] == ["first", "second"]
    # While the first node runs nothing is on disk: the input and step 0 are the seed, held in memory.
    assert seen["first"] == []
    # Step 0 was written with the first node's writes; step 1 (step 0 + those writes) is held while the
    # second node runs, and reaches the disk with the second node's writes.
    assert seen["second"] == [0]
    assert saved(path, "row") == [0, 1]  # the final step 2 stays in memory: the runner stores the record


async def test_a_row_killed_after_its_last_node_resumes_without_running_a_node_again(tmp_path: Path) -> None:
    """The latest checkpoint is never on disk: a re-run rebuilds it from the one before and the writes."""
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path) as saver:  # the process dies after the graph, before the record
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        saver.expect_new("row")
        await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    with InlineSqliteSaver.open(path) as saver:
        assert saver.thread_ids() == {"row"}
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        state = await compiled.aget_state(CONFIG)
        # step 1 plus the second node's stored writes: the final values, the task done (what the runner
        # resumes with ainvoke(None), synth/engine/runner.py)
        assert state.values["steps"] == ["first", "second"] and state.tasks[0].result == {"steps": ["second"]}
        final = await compiled.ainvoke(None, CONFIG, durability="sync")
    assert final["steps"] == ["first", "second"]
    assert calls == Counter({"first": 1, "second": 1})


async def test_a_row_failing_in_its_second_node_resumes_there_without_rerunning_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path) as saver:
        compiled = two_nodes(path, calls, seen, fail="second").copy(update={"checkpointer": saver})
        saver.expect_new("row")
        with pytest.raises(Boom):
            await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    assert calls == Counter({"first": 1, "second": 1})
    with InlineSqliteSaver.open(path) as saver:  # the re-run: a fresh process, a fresh saver
        assert saver.thread_ids() == {"row"}
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        state = await compiled.aget_state(CONFIG)
        assert state.next == ("second",) and state.values["steps"] == ["first"]
        final = await compiled.ainvoke(None, CONFIG, durability="sync")
    assert final["steps"] == ["first", "second"]
    assert calls == Counter({"first": 1, "second": 2})


async def test_a_node_without_writes_still_leaves_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    """A held checkpoint superseded without any task's writes (a node returning nothing) is written then."""
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()

    def build(fail: bool) -> Any:
        async def quiet(state: State) -> dict[str, Any]:
            calls["quiet"] += 1
            return {}

        async def second(state: State) -> dict[str, Any]:
            calls["second"] += 1
            if fail:
                raise Boom("second")
            return {"steps": ["second"]}

        graph = StateGraph(State)
        graph.add_node("quiet", quiet)
        graph.add_node("second", second)
        graph.add_edge(START, "quiet")
        graph.add_edge("quiet", "second")
        return graph.compile()

    with InlineSqliteSaver.open(path) as saver:
        compiled = build(fail=True).copy(update={"checkpointer": saver})
        saver.expect_new("row")
        with pytest.raises(Boom):
            await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    with InlineSqliteSaver.open(path) as saver:
        compiled = build(fail=False).copy(update={"checkpointer": saver})
        assert (await compiled.aget_state(CONFIG)).next == ("second",)
        final = await compiled.ainvoke(None, CONFIG, durability="sync")
    assert final["steps"] == ["second"]
    assert calls == Counter({"quiet": 1, "second": 2})


async def test_a_row_killed_in_its_first_node_leaves_nothing_and_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    running = asyncio.Event()

    async def first(state: State) -> dict[str, Any]:
        running.set()
        await asyncio.sleep(60)  # the process dies here
        return {"steps": ["first"]}

    graph = StateGraph(State)
    graph.add_node("first", first)
    graph.add_edge(START, "first")
    with InlineSqliteSaver.open(path) as saver:
        compiled = graph.compile().copy(update={"checkpointer": saver})
        saver.expect_new("row")
        row = asyncio.create_task(
            compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
        )
        await running.wait()
        assert saved(path, "row") == []  # what a kill now leaves on disk: nothing, the row starts over
        # Read back meanwhile (the runner does for a failed row): the held step 0, answered from memory.
        state = await compiled.aget_state(CONFIG)
        assert state.values == {"seed": {"text": "a"}, "steps": []} and state.next == ("first",)
        row.cancel()
        with pytest.raises(asyncio.CancelledError):
            await row
    with InlineSqliteSaver.open(path) as saver:
        assert saver.thread_ids() == set()


async def test_with_the_call_cache_a_rows_last_writes_stay_in_memory(tmp_path: Path) -> None:
    """``keep_last_writes=False`` (the runner's choice when every call is cached): the last node's writes and
    the checkpoint they would take to disk are not committed; a kill there re-runs only the last node."""
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path, keep_last_writes=False) as saver:  # dies before the record
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        saver.expect_new("row")
        final = await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
        assert final["steps"] == ["first", "second"]
        assert (await compiled.aget_state(CONFIG)).values["steps"] == ["first", "second"]  # from memory
    assert seen["second"] == [0] and saved(path, "row") == [0]  # step 0 came with the first node's writes
    with InlineSqliteSaver.open(path) as saver:
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        state = await compiled.aget_state(CONFIG)
        # step 0 plus the first node's stored writes (what the runner resumes with ainvoke(None))
        assert state.values["steps"] == ["first"] and state.tasks[0].result == {"steps": ["first"]}
        final = await compiled.ainvoke(None, CONFIG, durability="sync")
    assert final["steps"] == ["first", "second"]
    assert calls == Counter({"first": 1, "second": 2})  # the re-run's calls come from the cache


async def test_with_the_call_cache_a_one_node_row_touches_no_table(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"

    async def only(state: State) -> dict[str, Any]:
        return {"steps": ["only"]}

    graph = StateGraph(State)
    graph.add_node("only", only)
    graph.add_edge(START, "only")
    statements: list[str] = []
    with InlineSqliteSaver.open(path, keep_last_writes=False) as saver:
        saver.conn.set_trace_callback(statements.append)
        compiled = graph.compile().copy(update={"checkpointer": saver})
        for row in ("a", "b"):
            saver.expect_new(row)
            config: Any = {"configurable": {"thread_id": row}}
            final = await compiled.ainvoke({"seed": {"text": row}, "steps": []}, config, durability="sync")
            assert final["steps"] == ["only"]
            saver.forget(row)
        saver.delete_threads(["a", "b"])  # their records are stored: nothing of theirs to delete
        assert statements == []
        saver.delete_threads(["resumed"])  # a row a previous run left on disk is still deleted
        assert any(statement.startswith("DELETE") for statement in statements)


async def test_a_failed_last_node_is_committed_and_resumes_there(tmp_path: Path) -> None:
    """An error is a write LangGraph keeps (``__error__``): not a row's clean end, so it is committed."""
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path, keep_last_writes=False) as saver:
        compiled = two_nodes(path, calls, seen, fail="second").copy(update={"checkpointer": saver})
        saver.expect_new("row")
        with pytest.raises(Boom):
            await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    with InlineSqliteSaver.open(path) as saver:
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        assert (await compiled.aget_state(CONFIG)).next == ("second",)
        final = await compiled.ainvoke(None, CONFIG, durability="sync")
    assert final["steps"] == ["first", "second"] and calls == Counter({"first": 1, "second": 2})


async def test_without_holding_every_checkpoint_is_written(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    calls: Counter[str] = Counter()
    seen: dict[str, list[int]] = {}
    with InlineSqliteSaver.open(path, hold_start=False) as saver:
        compiled = two_nodes(path, calls, seen).copy(update={"checkpointer": saver})
        saver.expect_new("row")
        await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    assert seen["first"] == [-1, 0]
    assert saved(path, "row") == [-1, 0, 1, 2]


async def test_a_held_checkpoint_keeps_the_state_it_was_given(tmp_path: Path) -> None:
    """Held checkpoints are serialised at once: a node changing the state in place cannot alter them."""
    path = tmp_path / "checkpoints.sqlite"
    with InlineSqliteSaver.open(path) as saver:

        async def mutate(state: State) -> dict[str, Any]:
            state["seed"]["text"] = "changed in place"
            raise Boom("first")

        graph = StateGraph(State)
        graph.add_node("first", mutate)
        graph.add_edge(START, "first")
        compiled = graph.compile().copy(update={"checkpointer": saver})
        saver.expect_new("row")
        with pytest.raises(Boom):
            await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
        assert (await compiled.aget_state(CONFIG)).values["seed"] == {"text": "a"}


def delta_reducer(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(item for write in writes for item in write)]


def test_graphs_with_delta_channels_are_recognised() -> None:
    class DeltaState(TypedDict, total=False):
        log: Annotated[list[str], DeltaChannel(delta_reducer)]

    async def node(state: DeltaState) -> dict[str, Any]:
        return {"log": ["x"]}

    def build(state: type) -> Any:
        graph = StateGraph(state)
        graph.add_node("n", node)
        graph.add_edge(START, "n")
        return graph.compile()

    assert replays_history(build(DeltaState))
    assert not replays_history(build(State))


def test_langgraph_reads_the_put_writes_signature_without_inspecting_it_again() -> None:
    saver = InlineSqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))
    for method in (saver.put_writes, saver.aput_writes):
        assert "task_path" in inspect.signature(method).parameters
        assert inspect.signature(method.__func__) is method.__func__.__signature__  # type: ignore[attr-defined]


async def test_a_subgraph_checkpoint_brings_the_held_root_checkpoint_to_disk(tmp_path: Path) -> None:
    """A row killed inside a subgraph resumes there: the root's step 0 is on disk before the subgraph's."""
    path = tmp_path / "checkpoints.sqlite"
    on_disk: list[tuple[str, int]] = []

    async def a(state: State) -> dict[str, Any]:
        return {"steps": ["a"]}

    async def b(state: State) -> dict[str, Any]:
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT checkpoint_ns, metadata FROM checkpoints WHERE thread_id = 'row'")
            on_disk.extend((ns.split(":")[0], json.loads(meta)["step"]) for ns, meta in rows)
        return {"steps": ["b"]}

    inner = StateGraph(State)
    inner.add_node("a", a)
    inner.add_node("b", b)
    inner.add_edge(START, "a")
    inner.add_edge("a", "b")
    outer = StateGraph(State)
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "sub")
    with InlineSqliteSaver.open(path) as saver:
        compiled = outer.compile().copy(update={"checkpointer": saver})
        saver.expect_new("row")
        final = await compiled.ainvoke({"seed": {"text": "a"}, "steps": []}, CONFIG, durability="sync")
    assert final["steps"] == ["a", "b"]
    assert ("", 0) in on_disk and ("", -1) not in on_disk  # the root's step 0, written with the subgraph's
    assert any(ns == "sub" for ns, _ in on_disk)
