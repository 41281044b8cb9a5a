"""CPU cost of each layer of the engine per model call, with the HTTP round trip taken out.

Run ``python bench/layers.py`` (~1 minute). ``throughput.py`` measures the engine against a naive client end
to end; this script says which layer the difference goes to. The OpenAI SDK's HTTP call is replaced by a
coroutine returning a prebuilt ``ChatCompletion`` (so the SDK and httpx cost, which the naive client pays
too, is not in these figures), and each layer is timed on top of the one below, one call at a time:

* ``autogen client``: ``SynthOpenAIChatCompletionClient.create`` (autogen-ext: request args, message
  conversion, ``CreateResult``);
* ``+ ManagedClient``: slots, timeout, retry loop, counters; ``+ call cache``: key, lookup, queued write;
* ``+ CallRecorder``; ``+ Role.run``: templates, a fresh AutoGen ``AssistantAgent``, the ``Step``;
* ``+ LangGraph``: the ``ECHO`` graph invoked (one node, one conditional edge), without a checkpointer;
* ``+ checkpoints``: the same with the runner's SQLite checkpointer and ``durability="sync"``, opened as the
  runner opens it over cached clients (a row's last writes not committed: for this one-node graph,
  LangGraph's checkpoint machinery and the saver's held copies, no SQL);
* ``+ runner``: ``Runner.run`` over N rows, 32 in flight (records, the writer), per row.

From ``+ call cache`` on, every layer runs on the cached client (each call a miss, as in a first run),
and all of them under the runner's GC settings (:func:`synth.engine.quiet_gc.quiet_gc`). CPU microseconds per
call (``time.process_time``), medians of ``--repeat`` rounds. Results: ``bench/results/layers.json`` (with
the load average: on a busy machine every layer costs more CPU time, so compare layers within one file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autogen_core.models import SystemMessage, UserMessage  # noqa: E402
from openai.types.chat import ChatCompletion  # noqa: E402

from synth.engine.cache import CALL_SCOPE, CallCache  # noqa: E402
from synth.engine.checkpoints import InlineSqliteSaver  # noqa: E402
from synth.engine.inputs import SeedRow  # noqa: E402
from synth.engine.quiet_gc import quiet_gc  # noqa: E402
from synth.engine.runner import Runner  # noqa: E402
from synth.engine.store import RunStore  # noqa: E402
from synth.graph import ModelSet  # noqa: E402
from synth.models import ClientOptions, ManagedClient  # noqa: E402
from synth.models.openai_client import build_openai_client  # noqa: E402
from synth.recording import CallRecorder  # noqa: E402
from synth.testing.graphs import ECHO, ECHO_ROLE, Answer  # noqa: E402

RESULTS = REPO / "bench" / "results"
SPEC = "openai:m@http://127.0.0.1:9/v1"
REPLY = ChatCompletion.model_validate(
    {
        "id": "bench",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": json.dumps({"answer": "echo(row)"})},
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
    }
)


class _NoHttp:
    """Stands in for ``AsyncOpenAI``: ``chat.completions.create`` answers at once, no request is built."""

    def __init__(self) -> None:
        self.chat = self
        self.completions = self

    async def create(self, **_: Any) -> ChatCompletion:
        return REPLY

    async def close(self) -> None:
        return None


def managed_client(cache: CallCache | None = None) -> ManagedClient:
    inner = build_openai_client("m", SPEC.split("@", 1)[1], ClientOptions())
    inner._client = _NoHttp()  # type: ignore[assignment]
    return ManagedClient(inner, ClientOptions(max_concurrency=32), spec=SPEC, cache=cache)


def check(ok: bool) -> None:
    """A layer that fails fast would look cheap: every measured call must succeed."""
    if not ok:
        raise RuntimeError("a measured call failed: the figures would be wrong")


async def per_call_us(fn: Callable[[int], Awaitable[Any]], calls: int) -> float:
    for i in range(200):  # warm-up: imports, first-call caches
        await fn(-1 - i)
    started = time.process_time()
    for i in range(calls):
        await fn(i)
    return 1e6 * (time.process_time() - started) / calls


async def one_round(tmp: Path, calls: int, rows: int) -> dict[str, float]:
    system, user = ECHO_ROLE.render(text="row 1: the quick brown fox jumps over the lazy dog")
    messages = [SystemMessage(content=system), UserMessage(content=user, source="user")]
    client = managed_client()
    cache = CallCache(tmp / f"calls-{time.monotonic_ns()}.sqlite")
    cached = managed_client(cache)
    models = ModelSet(default=cached, specs={"default": SPEC})
    compiled = ECHO.build(models)

    def state(i: int) -> dict[str, Any]:
        return {"seed": {"text": f"row {i}: the quick brown fox jumps over the lazy dog"}, "steps": []}

    async def with_cache(i: int) -> None:
        CALL_SCOPE.set(f"cache#{i}")  # a distinct row per call: every lookup misses, as in a first run
        await cached.create(messages, json_output=Answer)

    async def role(i: int) -> None:
        check((await ECHO_ROLE.run(cached, text=f"row {i}")).ok)

    async def graph(i: int) -> None:
        check((await compiled.ainvoke(state(i), {"configurable": {"thread_id": f"t{i}"}}))["steps"][0]["ok"])

    async def recorded(i: int) -> None:
        CALL_SCOPE.set(f"recorder#{i}")
        await CallRecorder(cached).create(messages, json_output=Answer)

    inner = client.inner
    out = {
        "autogen client": await per_call_us(lambda i: inner.create(messages, json_output=Answer), calls),
        "+ ManagedClient": await per_call_us(lambda i: client.create(messages, json_output=Answer), calls),
        "+ call cache": await per_call_us(with_cache, calls),
        "+ CallRecorder": await per_call_us(recorded, calls),
        "+ Role.run": await per_call_us(role, calls),
        "+ LangGraph": await per_call_us(graph, calls),
    }
    # as the runner opens it over cached clients: the row's last writes stay in memory (the ECHO graph has
    # one node, so nothing reaches the disk; LangGraph's checkpoint machinery still runs)
    path = tmp / f"checkpoints-{time.monotonic_ns()}.sqlite"
    with InlineSqliteSaver.open(path, keep_last_writes=False) as saver:
        saved = compiled.copy(update={"checkpointer": saver})

        async def checkpointed(i: int) -> None:
            tid = f"t{i}"
            saver.expect_new(tid)
            final = await saved.ainvoke(state(i), {"configurable": {"thread_id": tid}}, durability="sync")
            check(final["steps"][0]["ok"])
            saver.forget(tid)

        out["+ checkpoints"] = await per_call_us(checkpointed, calls)
    store = RunStore(tmp / f"run-{time.monotonic_ns()}")
    runner = Runner(ECHO, models, store, concurrency=32)
    seeds = [SeedRow(data=state(i)["seed"], source=f"seeds.jsonl:{i + 1}") for i in range(rows)]
    started = time.process_time()
    summary = await runner.run(seeds)
    check(summary.counts["ok"] == rows)
    out["+ runner"] = 1e6 * (time.process_time() - started) / rows
    store.close()
    cache.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per layer and round")
    parser.add_argument("--rows", type=int, default=2000, help="rows for the runner layer")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds: list[dict[str, float]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            with quiet_gc():  # the run's GC settings for every layer (the runner applies them itself)
                rounds.append(asyncio.run(one_round(Path(tmp), args.calls, args.rows)))
    medians = {layer: statistics.median(r[layer] for r in rounds) for layer in rounds[0]}
    print(f"{'layer (cumulative)':<20}{'us/call':>10}{'added':>10}")
    previous = 0.0
    for layer, us in medians.items():
        print(f"{layer:<20}{us:>10.0f}{us - previous:>10.0f}")
        previous = us
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "us_per_call": medians,
        "rounds": rounds,
        "calls": args.calls,
        "rows": args.rows,
        "load_avg_before": load_before,  # CPU time per call grows on a loaded machine (shared caches)
        "load_avg_after": os.getloadavg(),
    }
    (RESULTS / "layers.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'layers.json'}")


if __name__ == "__main__":
    main()
