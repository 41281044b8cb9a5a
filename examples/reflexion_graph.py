"""Reflexion in Python: actor -> evaluator -> reflector -> actor, until accepted or max_rounds.

    synth run examples/reflexion_graph.py:REFLEXION -i examples/reflexion_seeds.jsonl -o runs/reflexion-py
"""

from collections.abc import Mapping
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict

from synth.export import sft_features
from synth.graph import BaseState, ExportFormat, ModelSet, SynthGraph, failed, unless_stopped
from synth.role import Role


class Seed(BaseModel):
    model_config = ConfigDict(extra="allow")
    instruction: str


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["accept", "revise"]
    feedback: str


class Lesson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lesson: str


ACTOR = Role(
    name="actor",
    instructions="You answer tasks correctly and briefly.",
    prompt="Task: {{ instruction }}\n{% if lessons %}Lessons from earlier attempts:\n"
    "{% for l in lessons %}- {{ l }}\n{% endfor %}{% endif %}Write your answer.",
    output=Answer,
)
EVALUATOR = Role(
    name="evaluator",
    instructions="You check answers strictly. Accept only a correct and complete answer.",
    prompt="Task: {{ instruction }}\nAnswer: {{ answer }}\nReply with verdict accept or revise, and why.",
    output=Verdict,
)
REFLECTOR = Role(
    name="reflector",
    instructions="You study a failed attempt and write one short lesson for the next try.",
    prompt="Task: {{ instruction }}\nAnswer: {{ answer }}\nFeedback: {{ feedback }}\nWrite the lesson.",
    output=Lesson,
)


class State(BaseState, total=False):
    answers: list[str]
    verdict: str
    feedback: str
    lessons: list[str]
    stop_reason: str
    error: str


def build(models: ModelSet, *, max_rounds: int = 3) -> Any:
    """Nodes read state, run one role, return a partial update; a failed call ends the row."""

    async def act(state: State) -> dict[str, Any]:
        task, lessons = state["seed"]["instruction"], state.get("lessons", [])
        step = await ACTOR.run(models.for_role("actor"), instruction=task, lessons=lessons)
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], "answers": [*state.get("answers", []), step.output["answer"]]}

    async def evaluate(state: State) -> dict[str, Any]:
        task, answer = state["seed"]["instruction"], state["answers"][-1]
        step = await EVALUATOR.run(models.for_role("evaluator"), instruction=task, answer=answer)
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], **step.output}

    async def reflect(state: State) -> dict[str, Any]:
        task, answer = state["seed"]["instruction"], state["answers"][-1]
        step = await REFLECTOR.run(
            models.for_role("reflector"), instruction=task, answer=answer, feedback=state["feedback"]
        )
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], "lessons": [*state.get("lessons", []), step.output["lesson"]]}

    async def after_evaluate(state: State) -> str:  # the loop's exit: accepted, failed, or out of rounds
        done = state.get("stop_reason") or state["verdict"] == "accept"
        return END if done or len(state["answers"]) >= max_rounds else "reflect"

    graph = StateGraph(State)
    graph.add_node("act", act)
    graph.add_node("evaluate", evaluate)
    graph.add_node("reflect", reflect)
    graph.add_edge(START, "act")
    graph.add_conditional_edges("act", unless_stopped("evaluate", END), ["evaluate", END])
    graph.add_conditional_edges("evaluate", after_evaluate, ["reflect", END])
    graph.add_conditional_edges("reflect", unless_stopped("act", END), ["act", END])
    return graph.compile()


def to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("answers", "verdict", "feedback", "lessons")
    return {"result": {"instruction": state["seed"]["instruction"], **{k: state.get(k) for k in keys}}}


def sft_rows(trajectory: Any) -> Any:
    result = trajectory.result
    if result["verdict"] == "accept":
        yield {
            "id": trajectory.id,
            "messages": [
                {"role": "user", "content": result["instruction"]},
                {"role": "assistant", "content": result["answers"][-1]},
            ],
        }


REFLEXION = SynthGraph(
    name="reflexion-py",
    description="Reflexion: act, evaluate, reflect and retry until accepted (at most max_rounds).",
    version="1",
    seed_model=Seed,
    roles=(ACTOR, EVALUATOR, REFLECTOR),
    build=build,
    to_trajectory=to_trajectory,
    exports={"sft": ExportFormat("sft", "instruction -> accepted answer", sft_rows, sft_features)},
    default_options={"max_rounds": 3},
)
