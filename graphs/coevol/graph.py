"""CoEvol (Li et al., EMNLP 2024): debate -> advise -> edit -> judge in both orders, up to N rounds.

Each round: the positive and the critical debater run a two-round debate as an AutoGen team (4
messages), the advisor turns it into at most 3 suggestions, the editor revises, and the judge compares
previous vs revised in both orders. Scores are merged by position and averaged; the revision is
accepted only when it scores strictly higher (ties reject). A judge that fails to parse in both orders,
a rejected revision, or ``max_rounds`` stops the loop; the previous response is kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from autogen_agentchat.messages import StructuredMessage
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core.models import SystemMessage, UserMessage
from pydantic import BaseModel, ConfigDict, Field

from graphs.coevol.exports import EXPORTS
from graphs.coevol.result import CoEvolResult
from roles.coevol import (
    ADVISOR,
    CRITICAL_DEBATER,
    EDITOR,
    JUDGE,
    POSITIVE_DEBATER,
    RESPONDER,
    ROLES,
    VERDICTS,
    Answer,
)
from synth.graph import BaseState, ModelSet, SynthGraph, chain, failed, role_node
from synth.models.base import ScoreRequest, SupportsLogprobs
from synth.recording import CallRecorder
from synth.role import Role
from synth.trajectory import Step, Usage


class CoEvolSeed(BaseModel):
    """A seed row: Alpaca-style. Rows without ``output`` first get one from the responder."""

    model_config = ConfigDict(extra="allow")
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str | None = None


class CoEvolState(BaseState, total=False):
    original: str
    response: str
    candidate: str
    debate: list[dict[str, Any]]
    suggestions: list[str]
    round: int
    accepted_rounds: int
    rounds: list[dict[str, Any]]


def build(models: ModelSet, *, max_rounds: int = 3, judge_mode: str = "auto") -> Any:
    """The compiled CoEvol graph for these models."""
    if max_rounds < 1:
        raise ValueError("coevol option max_rounds must be >= 1")
    judge_client = models.for_role(JUDGE.name)
    use_logprobs = _judge_uses_logprobs(judge_mode, judge_client, models.spec_for(JUDGE.name))

    async def respond(state: CoEvolState) -> dict[str, Any]:
        seed = state["seed"]
        if seed.get("output"):
            return _first_response(seed["output"])
        step = await RESPONDER.run(models.for_role(RESPONDER.name), **_task(seed))
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], **_first_response(step.output_as(Answer).response)}

    async def debate(state: CoEvolState) -> dict[str, Any]:
        steps, turns, error_step = await _run_debate(models, state)
        if error_step is not None:
            return {**failed(error_step, fatal=state["round"] == 1), "steps": [*steps, error_step.as_state()]}
        return {"steps": steps, "debate": turns}

    def revising(key: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """The inputs of the advisor (``debate``) and the editor (``suggestions``)."""
        return lambda state: {**_task(state["seed"]), "response": state["response"], key: state[key]}

    first_round = lambda state: state["round"] == 1  # noqa: E731  a failure after round 1 keeps the row
    advise = role_node(
        ADVISOR,
        models,
        lambda out, _: {"suggestions": out["suggestions"]},
        inputs=revising("debate"),
        node="advise",
        fatal=first_round,
    )
    edit = role_node(EDITOR, models, lambda out, _: {"candidate": out["response"]},
                     inputs=revising("suggestions"), node="edit", fatal=first_round)  # fmt: skip

    async def judge(state: CoEvolState) -> dict[str, Any]:
        previous, new = state["response"], state["candidate"]
        task = _task(state["seed"])
        orders = [(previous, new), (new, previous)]
        if use_logprobs:
            steps = list(
                await asyncio.gather(*(_logprob_verdict(judge_client, task, a, b) for a, b in orders))
            )
        else:
            steps = list(
                await asyncio.gather(
                    *(
                        JUDGE.run(judge_client, node="judge", response_1=a, response_2=b, **task)
                        for a, b in orders
                    )
                )
            )
        scores = merge_judge_scores([s.output["verdict"] if s.ok and s.output else None for s in steps])
        record = {
            "round": state["round"],
            "suggestions": state["suggestions"],
            "candidate": new,
            "previous": previous,
            "scores": scores,
        }
        update: dict[str, Any] = {"steps": [s.as_state() for s in steps]}
        if scores["judge_error"]:
            update["stop_reason"] = "judge failed to parse in both orders"
        elif scores["new"] > scores["previous"]:
            update.update(
                response=new, accepted_rounds=state["accepted_rounds"] + 1, round=state["round"] + 1
            )
            if state["round"] >= max_rounds:
                update["stop_reason"] = f"max_rounds ({max_rounds}) reached"
        else:
            update["stop_reason"] = "revision not better (ties reject)"
        record["accepted"] = "response" in update
        update["rounds"] = [*state.get("rounds", []), record]
        return update

    nodes = {"respond": respond, "debate": debate, "advise": advise, "edit": edit, "judge": judge}
    return chain(CoEvolState, nodes, loop_from="debate")  # judge stops the loop (stop_reason)


def merge_judge_scores(verdicts: list[str | None]) -> dict[str, Any]:
    """CoEvol's scoring of the two judge runs: run 0 saw (previous, new), run 1 saw (new, previous).

    A winner scores [1, 0] / [0, 1], ``equal`` [1, 1]; scores are mapped back to (previous, new) by
    position and averaged over the runs that parsed. Both unparsed -> ``judge_error``.
    """
    per_run: list[tuple[float, float] | None] = []
    for index, verdict in enumerate(verdicts):
        if verdict not in VERDICTS:
            per_run.append(None)
            continue
        first, second = {"assistant 1": (1.0, 0.0), "assistant 2": (0.0, 1.0), "equal": (1.0, 1.0)}[verdict]
        per_run.append((first, second) if index == 0 else (second, first))
    parsed = [s for s in per_run if s is not None]
    if not parsed:
        return {"previous": 0.0, "new": 0.0, "runs": per_run, "verdicts": verdicts, "judge_error": True}
    return {
        "previous": sum(s[0] for s in parsed) / len(parsed),
        "new": sum(s[1] for s in parsed) / len(parsed),
        "runs": per_run,
        "verdicts": verdicts,
        "judge_error": False,
    }


def _first_response(text: str) -> dict[str, Any]:
    return {"original": text, "response": text, "round": 1, "accepted_rounds": 0}


def _task(seed: Mapping[str, Any]) -> dict[str, Any]:
    return {"instruction": seed["instruction"], "input": seed.get("input") or ""}


def _judge_uses_logprobs(mode: str, client: Any, spec: str) -> bool:
    if mode not in ("auto", "generate", "logprob"):
        raise ValueError(f"coevol option judge_mode must be auto, generate or logprob, not {mode!r}")
    can = isinstance(client, SupportsLogprobs)
    if mode == "logprob" and not can:
        raise ValueError(
            f"judge_mode=logprob needs a backend with exact log-probabilities; '{spec or client}' has none. "
            "Use judge_mode=generate."
        )
    # The embedded base model judges poorly by free generation (it always picks the first answer);
    # scoring the verdict options by log-probability is its better mode. Real endpoints generate.
    return mode == "logprob" or (mode == "auto" and can and spec.startswith("local:"))


async def _logprob_verdict(client: Any, task: dict[str, Any], first: str, second: str) -> Step:
    """Pick the verdict whose JSON continuation has the lowest mean NLL under the judge model."""
    system, user = JUDGE.render(response_1=first, response_2=second, **task)
    messages = [SystemMessage(content=system), UserMessage(content=user, source="user")]
    prefixes = {v: json.dumps({"verdict": v}, separators=(",", ":"))[:-1] for v in VERDICTS}
    started = time.perf_counter()
    nll = await client.continuation_nll([ScoreRequest(messages, text) for text in prefixes.values()])
    latency = time.perf_counter() - started
    scored = dict(zip(VERDICTS, nll, strict=True))
    verdict = min(scored, key=scored.__getitem__)
    return Step(
        role=JUDGE.name,
        node="judge",
        inputs={**task, "response_1": first, "response_2": second},
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        output={"verdict": verdict, "explanation": "chosen by log-probability of each verdict"},
        raw=prefixes[verdict] + "}",
        model=getattr(client, "spec", ""),
        template_hash=JUDGE.template_hash,
        usage=Usage(calls=1),
        latency_s=latency,
        meta={"mode": "logprob", "nll": scored},
    )


async def _run_debate(
    models: ModelSet, state: CoEvolState
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Step | None]:
    """Two debate rounds as one AutoGen team: defender, critic, defender, critic.

    Each debater's calls go through its own :class:`CallRecorder`, which gives a malformed turn the same
    one repair turn as any role. A turn that still fails stops the team; it is blamed on the debater that
    made it, with that debater's raw text. Returns the finished turns' steps, the arguments, and the
    failed step (or None).
    """
    inputs = {**_task(state["seed"]), "response": state["response"]}
    debaters: list[tuple[Role, str]] = [(POSITIVE_DEBATER, "defender"), (CRITICAL_DEBATER, "critic")]
    recorders = {
        speaker: CallRecorder(models.for_role(role.name), sampling=role.sampling)
        for role, speaker in debaters
    }
    agents = [
        role.agent(recorders[speaker], role.render(round=1, **inputs)[0], agent_name=speaker)
        for role, speaker in debaters
    ]
    team = RoundRobinGroupChat(
        agents, max_turns=2, custom_message_types=[StructuredMessage[POSITIVE_DEBATER.output]]
    )  # type: ignore[name-defined]
    error: Exception | None = None
    try:
        for round_number in (1, 2):
            await team.run(task=POSITIVE_DEBATER.render(round=round_number, **inputs)[1])
    except Exception as exc:  # a turn failed validation after its repair, or the backend failed
        error = exc
    steps, speakers = _turn_steps(debaters, recorders, inputs)
    if error is None:
        pairs = zip(speakers, steps, strict=True)
        turns = [{"speaker": who, "argument": (s.output or {})["argument"]} for who, s in pairs]
        return [s.as_state() for s in steps], turns, None
    if steps and not steps[-1].ok:  # the team stops at the first failed turn: it is the last one
        return [s.as_state() for s in steps[:-1]], [], steps[-1]
    # The team failed outside a model call: blame the debater whose turn was next.
    role, speaker = debaters[len(steps) % 2]
    failed_step = role.step([], node="debate", inputs=inputs, model=recorders[speaker].spec, error=error)
    failed_step.meta["turn"] = len(steps) // 2 + 1
    return [s.as_state() for s in steps], [], failed_step


def _turn_steps(
    debaters: list[tuple[Role, str]], recorders: dict[str, CallRecorder], inputs: dict[str, Any]
) -> tuple[list[Step], list[str]]:
    """One Step per debate turn in speaking order (``meta.turn`` = the debater's round), and the speakers."""
    calls = sorted(
        (
            (turn.started, index, role, speaker, turn)
            for role, speaker in debaters
            for index, turn in enumerate(recorders[speaker].turns)
        ),
        key=lambda call: call[0],
    )
    steps, speakers = [], []
    for _, index, role, speaker, turn in calls:
        assert role.output is not None
        output = role.output.model_validate_json(turn.raw).model_dump(mode="json") if turn.ok else None
        error = None if turn.ok else (turn.error or turn.invalid or ValueError("no reply"))
        step = role.step(
            [turn], node="debate", inputs=inputs, model=recorders[speaker].spec, output=output, error=error
        )
        step.meta["turn"] = index + 1
        steps.append(step)
        speakers.append(speaker)
    return steps, speakers


def to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
    seed = state["seed"]
    rounds = state.get("rounds", [])
    result = {
        "instruction": seed["instruction"],
        "input": seed.get("input") or "",
        "original": state.get("original"),
        "evolved": state.get("response"),
        "accepted_rounds": state.get("accepted_rounds", 0),
        "rounds": rounds,
        "stop_reason": state.get("stop_reason", ""),
    }
    return {"result": result, "scores": {"judge": [r["scores"] for r in rounds]}}


GRAPH = SynthGraph(
    name="coevol",
    description="CoEvol: debate, advise, edit and judge in both orders to evolve a response (EMNLP 2024).",
    version="1",
    seed_model=CoEvolSeed,
    roles=ROLES,
    build=build,
    to_trajectory=to_trajectory,
    exports=EXPORTS,
    result_model=CoEvolResult,
    report_section="graphs.coevol.report:CoEvolSection",
)
