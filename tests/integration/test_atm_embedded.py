"""ATM on the embedded model (``local:gemma-3-270m``): one NQ question, two fabrications, exact NLL scores.

The base 270M model writes weak fabrications; this checks the plumbing and the scoring (in fp32): both
fabrications are schema-valid, their NLL scores are finite and differ, and each score (so the ranking)
equals a direct transformers forward pass over the same rendered prompt.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from graphs.atm.graph import generator_messages
from roles.atm import Fabrication
from synth.models.base import ScoreRequest
from synth.models.local import LocalChatCompletionClient
from tests.integration.embedded_run import run_one_row
from tests.models.test_local_backend import _direct_nll
from tests.paths import DATA

pytestmark = pytest.mark.slow


def test_two_fabrications_scored_exactly_on_the_embedded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fp32: a batched bf16 forward pass differs from a single one by ~0.5 %, enough to blur a ranking
    monkeypatch.setenv("SYNTH_LOCAL_DTYPE", "fp32")
    row = json.loads((DATA / "qa_passages.jsonl").open(encoding="utf-8").readline())
    summary, record = run_one_row(tmp_path, "atm", row, {"n_fabrications": 2}, retries=0)
    assert record.status == "ok", record.error
    assert summary.counts["ok"] == 1

    result = record.result
    fabrications = result["fabrications"]
    assert [f["ok"] for f in fabrications] == [True, True], [f["error"] for f in fabrications]
    for fabrication in fabrications:
        Fabrication.model_validate({"title": fabrication["title"], "text": fabrication["text"]})
    scores = [f["nll"] for f in fabrications]
    assert all(math.isfinite(s) and s > 0 for s in scores) and scores[0] != scores[1]
    assert result["exact_match_clean"] in (True, False) and result["attacked_answer"] is not None

    # the same scores from a direct forward pass over the same prompts -> the same chosen / rejected
    gold = row["answers"][0]
    client = LocalChatCompletionClient("gemma-3-270m", dtype="fp32")
    client.engine.load()
    requests = [
        ScoreRequest(generator_messages(row["question"], [{"title": f["title"], "text": f["text"]}]), gold)
        for f in fabrications
    ]
    direct = _direct_nll(client, requests)
    assert scores == pytest.approx(direct, abs=1e-3)
    assert abs(direct[0] - direct[1]) > 2e-3, (scores, direct)  # apart beyond float noise: a real ranking
    most = max(range(2), key=lambda i: direct[i])
    assert result["chosen"] == fabrications[most]["sample"]
    assert result["rejected"] == fabrications[1 - most]["sample"]
