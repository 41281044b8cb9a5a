"""``synth run --executor ray``: blocks of input rows, each run by a Ray actor through the same Runner.

The driver (the ``synth run`` process, holding the run folder's lock) reads the input with Ray Data in
order, in blocks of ``--ray-block-rows`` rows. For each block it computes what only a pass over the whole
input knows - how often each row key occurred before the block (identical rows keep the ids the asyncio
executor gives them) and which of the block's trajectory ids the run's store already holds - and hands
the block to an idle :class:`BlockWorker` actor. The actor runs the block with
:class:`synth.engine.runner.Runner` (``--concurrency`` rows in flight, checkpoints, call cache, retries: the
asyncio executor's code path) into a work folder for the block, then writes the block's parquet shard. The
driver merges each finished shard into ``records.sqlite`` by trajectory id and records it in the manifest
(see :mod:`shards`).

Resume: a re-run skips blocks in the manifest; a block with a shard but no manifest entry is merged
again (adds nothing new); a block killed half-way resumes from its work folder - its stored rows are
skipped, its rows killed mid-graph resume from their checkpoints, finished calls come from its cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from synth.engine.cache import CallCache
from synth.engine.inputs import SeedRow, validate_row
from synth.engine.runner import Runner, RunSummary
from synth.engine.store import RunLock, RunStore
from synth.errors import RunFolderError, SynthError
from synth.executors.ray_input import iter_blocks
from synth.executors.shards import SHARDS_DIR, Manifest, block_name, merge_shard, shard_path, write_shard
from synth.graph import ModelSet
from synth.trajectory import Trajectory, row_key, trajectory_id

if TYPE_CHECKING:
    from synth.engine.session import RunRequest

#: Actors wait on model calls, not CPUs: a quarter CPU each leaves whole CPUs to Ray Data's read tasks
#: (with 1 CPU per actor, two actors on a 2-CPU cluster starve the read task and Ray Data hangs).
ACTOR_CPUS = 0.25
#: How long an actor waits for a block's lock that a killed run's actor may still hold.
LOCK_WAIT_S = 120.0


class BlockWorker:
    """A Ray actor (async: one event loop for its life) that runs blocks of rows, one at a time."""

    def __init__(self, request: dict[str, Any], shards: str, fingerprint: str, cwd: str) -> None:
        from synth.engine.session import RunRequest, resolve_graph

        # Relative paths (a graph file, a corpus option) and modules next to them resolve as in the driver
        # (on a cluster: when the driver's folder is shared storage mounted at the same path).
        if Path(cwd).is_dir():
            os.chdir(cwd)
            sys.path.insert(0, cwd)
        self.request = RunRequest.model_validate(request)
        self.shards = Path(shards)
        self.fingerprint = fingerprint
        self.graph = resolve_graph(self.request.graph)
        self.models: ModelSet | None = None

    def _models(self) -> ModelSet:
        from synth.engine.session import build_models

        if self.models is None:  # built on the actor's event loop, which its HTTP clients stay bound to
            self.models = build_models(self.request.models, self.request)
        return self.models

    async def run_block(
        self, name: str, rows: list[SeedRow], occurrences: dict[str, int], skip: list[str]
    ) -> dict[str, Any]:
        """Run one block into its work folder and write its shard; returns the runner's facts."""
        models = self._models()
        work = self.shards / name
        if shard_path(self.shards, name).exists():  # finished by an earlier run that died before merging
            shutil.rmtree(work, ignore_errors=True)
            return {"clients": _client_stats(models)}
        work.mkdir(parents=True, exist_ok=True)
        lock = RunLock(work)
        await _acquire(lock)
        try:
            summary = await self._run(work, models, rows, occurrences, skip)
        finally:
            lock.release()
        shutil.rmtree(work)
        return {"rows_run": summary.written, "clients": _client_stats(models)}

    async def _run(
        self, work: Path, models: ModelSet, rows: list[SeedRow], occurrences: dict[str, int], skip: list[str]
    ) -> RunSummary:
        seed_model = self.graph.seed_model
        rows = [row if row.error or seed_model is None else validate_row(row, seed_model) for row in rows]
        store = RunStore(work)
        cache = CallCache(work / "calls.sqlite") if self.request.cache else None
        try:
            for client in models.clients():
                client.cache = cache
            runner = Runner(
                self.graph,
                models,
                store,
                options=self.request.options,
                concurrency=self.request.concurrency,
                checkpoints=self.request.checkpoints,
            )
            if runner.fingerprint != self.fingerprint:
                raise SynthError(
                    f"a Ray worker on {os.uname().nodename} computes another configuration fingerprint than "
                    "the driver: its graph code, role templates or synth version differ. Install the same "
                    "versions on every node."
                )
            summary = await runner.run(rows, occurrences=occurrences, skip=skip)
            write_shard(store, shard_path(self.shards, work.name))
            return summary
        finally:
            for client in models.clients():
                client.cache = None
            if cache is not None:
                cache.close()
            store.close()

    async def close(self) -> None:
        if self.models is not None:
            for client in self.models.clients():
                await client.close()


async def _acquire(lock: RunLock) -> None:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            lock.acquire()
            return
        except RunFolderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _client_stats(models: ModelSet) -> dict[str, dict[str, Any]]:
    from synth.engine.session import client_report

    return client_report(models)


@dataclass
class _Block:
    name: str
    start: int
    rows: int
    actor: Any


class RayDriver:
    """Feeds blocks to actors, merges finished shards into the store, keeps the manifest (one thread)."""

    def __init__(
        self,
        request: RunRequest,
        store: RunStore,
        fingerprint: str,
        *,
        on_record: Callable[[Trajectory], None] | None = None,
        on_skip: Callable[[], None] | None = None,
    ) -> None:
        self.request, self.store, self.fingerprint = request, store, fingerprint
        self.on_record = on_record or (lambda _: None)
        self.on_skip = on_skip or (lambda: None)
        self.shards = store.folder.resolve() / SHARDS_DIR
        self.manifest = Manifest(self.shards)
        self.summary = RunSummary()
        self.clients: dict[int, dict[str, dict[str, Any]]] = {}  # per actor: its clients' cumulative stats

    def run(self) -> RunSummary:
        started = time.perf_counter()
        self.shards.mkdir(parents=True, exist_ok=True)
        merged, stored = self.manifest.blocks(), self.store.stored_ids()
        actors = [self._actor() for _ in range(self.request.ray_actors)]
        idle, pending = list(actors), dict[Any, _Block]()
        seen: Counter[str] = Counter()
        try:
            blocks = iter_blocks(
                self.request.input,
                self.request.ray_block_rows,
                self.request.limit,
                self.request.max_field_bytes,
            )
            for start, rows in blocks:
                name = block_name(start, start + len(rows))
                occurrences, tids = _ids(rows, seen, self.fingerprint)
                skip = [tid for tid in tids if tid in stored]
                if name in merged or len(skip) == len(rows):
                    self._skipped(len(rows))
                    continue
                self._skipped(len(skip))
                while not idle:
                    idle.append(self._collect(pending))
                actor = idle.pop()
                ref = actor.run_block.remote(name, rows, occurrences, skip)
                pending[ref] = _Block(name, start, len(rows), actor)
            while pending:
                self._collect(pending)
        finally:
            self._stop(actors, pending)
        self.summary.clients = _sum_stats(self.clients.values())
        self.summary.elapsed_s = time.perf_counter() - started
        return self.summary

    def _actor(self) -> Any:
        remote = ray.remote(num_cpus=ACTOR_CPUS, max_restarts=2, max_task_retries=2)(BlockWorker)
        request = self.request.model_dump(mode="json")
        return remote.remote(request, str(self.shards), self.fingerprint, os.getcwd())

    def _collect(self, pending: dict[Any, _Block]) -> Any:
        """Wait for one block, merge its shard, record it; returns its (now idle) actor."""
        [ref], _ = ray.wait(list(pending), num_returns=1)
        block = pending.pop(ref)
        try:
            facts = ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise SynthError(
                f"block {block.name} (input rows {block.start}-{block.start + block.rows - 1}) failed on a "
                f"Ray worker: {exc}. Re-run the same command to resume."
            ) from exc
        added = merge_shard(self.store, shard_path(self.shards, block.name))
        self.manifest.add(block.name, rows=block.rows, added=len(added))
        self.clients[id(block.actor)] = facts["clients"]
        for trajectory in added:
            self.summary.counts[trajectory.status] += 1
            self.summary.usage = self.summary.usage + trajectory.usage
            self.on_record(trajectory)
        return block.actor

    def _skipped(self, rows: int) -> None:
        self.summary.skipped += rows
        for _ in range(rows):
            self.on_skip()

    @staticmethod
    def _stop(actors: list[Any], pending: dict[Any, _Block]) -> None:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        try:
            ray.get([actor.close.remote() for actor in actors], timeout=30)
        except ray.exceptions.RayError:
            pass  # a dead actor has nothing left to close
        finally:
            for actor in actors:
                ray.kill(actor)


def _ids(rows: list[SeedRow], seen: Counter[str], fingerprint: str) -> tuple[dict[str, int], list[str]]:
    """Occurrences of the block's row keys before the block, and the block's trajectory ids (as the Runner
    computes them); counts the block's keys into ``seen``."""
    keys = [row_key(row.data) for row in rows]
    before = {key: seen[key] for key in set(keys) if seen[key]}
    tids = []
    for key in keys:
        tids.append(trajectory_id(key, seen[key], fingerprint))
        seen[key] += 1
    return before, tids


def _sum_stats(per_actor: Any) -> dict[str, dict[str, Any]]:
    """Per model spec, the actors' client stats added up (max for maxima, mean latency weighted by calls)."""
    total: dict[str, dict[str, Any]] = {}
    for clients in per_actor:
        for spec, stats in clients.items():
            into = total.setdefault(spec, {})
            for key, value in stats.items():
                if key == "errors":
                    into[key] = dict(Counter(into.get(key, {})) + Counter(value))
                elif key in ("max_in_flight", "concurrency_limit"):
                    into[key] = max(into.get(key, 0), value)
                elif key == "mean_latency_s":
                    into["_latency"] = into.get("_latency", 0.0) + value * stats["calls"]
                elif isinstance(value, int | float):
                    into[key] = into.get(key, 0) + value
    for stats in total.values():
        latency = stats.pop("_latency", 0.0)
        stats["mean_latency_s"] = round(latency / stats["calls"], 4) if stats.get("calls") else 0.0
    return total


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or the one this process already joined, or
    start a local one; True when this call started or joined it (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


async def run_on_ray(
    request: RunRequest,
    store: RunStore,
    fingerprint: str,
    *,
    on_record: Callable[[Trajectory], None] | None = None,
    on_skip: Callable[[], None] | None = None,
) -> RunSummary:
    """Run ``request`` on Ray into ``store``'s folder (already locked, configured, fingerprinted)."""
    owned = connect(request.ray_address)
    try:
        driver = RayDriver(request, store, fingerprint, on_record=on_record, on_skip=on_skip)
        return await asyncio.to_thread(driver.run)  # Ray's calls block: keep them off the event loop
    finally:
        if owned:
            ray.shutdown()
