"""Reflexion in Python, the twin of reflexion.yaml: act, evaluate, reflect and retry until accepted.
    synth run examples/reflexion_graph.py:REFLEXION -i examples/reflexion_seeds.jsonl -o runs/reflexion-py"""

from typing import Any, Literal

from synth.dataset.formats import sft_export
from synth.graph import Appended, BaseState, ModelSet, SynthGraph, chain, result_from, role_node, seed_fields
from synth.role import Role, output_model

TASK = "Task: {{ instruction }}\n"
LESSONS = "Lessons from earlier attempts:\n{% for l in lessons %}- {{ l }}\n{% endfor %}"
ACTOR = Role(
    name="actor",
    instructions="You answer tasks correctly and briefly.",
    prompt=TASK + "{% if lessons %}" + LESSONS + "{% endif %}Write your answer.",
    output=output_model("Answer", answer=str),
)
EVALUATOR = Role(
    name="evaluator",
    instructions="You check answers strictly. Accept only a correct and complete answer.",
    prompt=TASK + "Answer: {{ answer }}\nReply with verdict accept or revise, and why.",
    output=output_model("Verdict", verdict=Literal["accept", "revise"], feedback=str),
)
REFLECTOR = Role(
    name="reflector",
    instructions="You study a failed attempt and write one short lesson for the next try.",
    prompt=TASK + "Answer: {{ answer }}\nFeedback: {{ feedback }}\nWrite the lesson.",
    output=output_model("Lesson", lesson=str),
)


class State(BaseState, total=False):  # role nodes read their template variables from here, else the seed
    answer: str
    answers: Appended[str]  # every attempt
    lessons: Appended[str]
    verdict: str
    feedback: str


def accepted(values: dict[str, Any]) -> bool:  # the state, and the trajectory's result
    return values["verdict"] == "accept"


def build(models: ModelSet, *, max_rounds: int = 3) -> Any:
    act = role_node(ACTOR, models, lambda o, s: {**o, "answers": [o["answer"]]}, defaults={"lessons": []})
    reflect = role_node(REFLECTOR, models, lambda o, s: {"lessons": [o["lesson"]]})
    nodes = {"act": act, "evaluate": role_node(EVALUATOR, models), "reflect": reflect}
    return chain(State, nodes, loop_from="act", check_after="evaluate", until=accepted, max_rounds=max_rounds)


REFLEXION = SynthGraph(
    name="reflexion-py",
    description="Reflexion: act, evaluate, reflect and retry until accepted (at most max_rounds).",
    seed_model=seed_fields("instruction"),
    roles=(ACTOR, EVALUATOR, REFLECTOR),
    build=build,
    to_trajectory=result_from("instruction", "answers", "verdict", "feedback", "lessons"),
    exports={"sft": sft_export(lambda r: r["instruction"], lambda r: r["answers"][-1], when=accepted,
                               description="instruction -> accepted answer")},
)
