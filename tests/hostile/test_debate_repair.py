"""CoEvol's debate (an AutoGen team) under malformed replies: the repair turn, and blame on the real speaker.

Before the fix a malformed debate turn failed the row with no repair turn (at 5 % malformed replies 22 %
of rows were lost, against ~0.3 % for plain roles), and every debate failure was blamed on
``positive_debater`` with that role's text, even when the critic failed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.testing.openai_server import OpenAIServer
from synth.testing.replies import last_user_text, prompt_text, system_text
from tests.coevol_script import coevol_responder

RAMBLE = {"critic": "the critic rambles, no JSON", "defender": "the defender rambles, no JSON"}


def responder(request: dict[str, Any]) -> str:
    """Debaters break as the row's instruction says: ``CRITIC_ONCE`` (the critic's first reply, repaired
    on request), ``CRITIC_ALWAYS`` (every critic reply), ``DEFENDER_ROUND2`` (the defender in round 2)."""
    system = system_text(request)
    if "two-round debate" in system:
        side = "defender" if "Your side: the response is good" in system else "critic"
        repair = "did not match the required JSON schema" in last_user_text(request)
        round_two = "Round 2." in prompt_text(request)
        if (
            (side == "critic" and "CRITIC_ONCE" in system and not repair and not round_two)
            or (side == "critic" and "CRITIC_ALWAYS" in system)
            or (side == "defender" and "DEFENDER_ROUND2" in system and round_two)
        ):
            return RAMBLE[side]
    return coevol_responder(request)


def run(tmp_path: Path, instructions: list[str]) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": i, "output": "v0"}) + "\n" for i in instructions))
    with OpenAIServer(responder) as server:
        request = RunRequest(
            graph="coevol",
            input=seeds,
            out=tmp_path / "run",
            options={"max_rounds": 1},
            models={"default": f"openai:m@{server.base_url}"},
            concurrency=3,
        )
        asyncio.run(run_session(request))
    store = RunStore(tmp_path / "run")
    try:
        return {r.seed["instruction"]: r for r in store.iter_records()}
    finally:
        store.close()


def test_a_malformed_debate_turn_gets_one_repair_turn(tmp_path: Path) -> None:
    record = run(tmp_path, ["CRITIC_ONCE please"])["CRITIC_ONCE please"]
    assert record.status == "ok", record.error
    debate = [s for s in record.steps if s.node == "debate"]
    assert [s.role for s in debate] == ["positive_debater", "critical_debater"] * 2
    critic = debate[1]
    assert critic.repaired and critic.ok and critic.usage.calls == 2
    assert critic.output == {"argument": "critic argues"}
    # the repair request carried the validation error and the bad reply
    assert "Error:" in critic.messages[-2]["content"] and RAMBLE["critic"] in critic.messages[-3]["content"]
    assert not any(s.repaired for s in debate if s is not critic)


def test_a_debate_failure_is_blamed_on_the_speaker_that_failed(tmp_path: Path) -> None:
    records = run(tmp_path, ["CRITIC_ALWAYS here", "DEFENDER_ROUND2 here"])
    critic = records["CRITIC_ALWAYS here"]
    assert critic.status == "failed"
    assert critic.error and critic.error.startswith("role 'critical_debater' failed (validation)")
    failing = critic.steps[-1]
    assert (failing.role, failing.ok, failing.repaired) == ("critical_debater", False, True)
    assert failing.raw == RAMBLE["critic"] and failing.error_reason == "validation"
    assert [s.role for s in critic.steps] == ["positive_debater", "critical_debater"]

    defender = records["DEFENDER_ROUND2 here"]
    assert defender.error and defender.error.startswith("role 'positive_debater' failed (validation)")
    failing = defender.steps[-1]
    assert failing.role == "positive_debater" and failing.raw == RAMBLE["defender"]
    assert failing.meta["turn"] == 2
    assert [s.role for s in defender.steps] == ["positive_debater", "critical_debater", "positive_debater"]
