"""The dataset card: hub YAML front matter that parses, and a body naming every field issue 7 asks for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from graphs.coevol import GRAPH
from synth.dataset.card import detect_languages, size_category
from synth.dataset.export import ExportOptions, export_run
from synth.engine.store import RunStore
from synth.filters import apply_filters, build_config
from synth.trajectory import Trajectory, Usage

SECRET = "sk-test-0123456789abcdef"


def record(i: int, evolved: str) -> Trajectory:
    return Trajectory(
        id=f"t{i}",
        graph="coevol",
        seed={"instruction": f"Explain topic {i}."},
        result={
            "instruction": f"Explain topic {i}.",
            "input": "",
            "original": f"Topic {i} is a thing that people talk about.",
            "evolved": evolved,
            "accepted_rounds": 1,
            "rounds": [],
            "stop_reason": "",
        },
        usage=Usage(prompt_tokens=100, completion_tokens=20, calls=5),
    )


@pytest.fixture
def card_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    folder = tmp_path / "run"
    store = RunStore(folder)
    texts = [
        f"Topic {i} is explained here in plain words, with an example and a short summary at the end."
        for i in range(8)
    ]
    texts[3] = "short"
    texts[0] = f"The key the server echoed was {SECRET}, which must never reach a card."
    store.write([record(i, text) for i, text in enumerate(texts)])
    store.write_config(
        {
            "graph": "coevol",
            "graph_version": "1",
            "input": "examples/data/instructions.jsonl",
            "models": {"default": "openai:gpt-4o-mini", "judge": "openai:gpt-4o"},
            "options": {"max_rounds": 3, "judge_mode": "auto"},
            "fingerprint": "abc123",
            "api_key_env": "OPENAI_API_KEY",
        },
        "abc123",
    )
    store.close()
    asyncio.run(apply_filters(folder, build_config(None, ["length field=result.evolved min_chars=10"])))
    return folder


def test_card_front_matter_and_body_name_every_field(card_run: Path, tmp_path: Path) -> None:
    options = ExportOptions(splits={"test": 2}, seed=5, license="cc-by-4.0", seed_license="ODC-By-1.0")
    result = export_run(card_run, GRAPH, "dpo", tmp_path / "dpo", options)
    assert result.splits == {"train": 5, "test": 2}
    card = (tmp_path / "dpo" / "README.md").read_text()
    _, front_text, body = card.split("---\n", 2)
    front = yaml.safe_load(front_text)
    files = {f["split"]: f["path"] for f in front["configs"][0]["data_files"]}
    out = tmp_path / "dpo"
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "data").glob("*"))
    assert sorted(files.values()) == on_disk and set(files) == {"train", "test"}
    assert front["license"] == "cc-by-4.0"
    assert front["language"] == ["en"]  # detected from the exported text
    assert front["task_categories"] == ["text-generation"]
    assert front["size_categories"] == ["n<1K"]
    assert {"synthetic", "synth-coevol", "dpo"} <= set(front["tags"])
    # How it was made: graph, roles with template hashes, models, sampling, seed data and its license.
    assert "`coevol` graph (version 1)" in body
    for role, digest in GRAPH.template_hashes().items():
        assert f"| `{role}` | `{digest}` |" in body
    assert "| `judge` | " in body and "`openai:gpt-4o` |" in body and "`openai:gpt-4o-mini`" in body
    assert '`{"temperature": 0.0}`' in body  # the roles' sampling parameters
    assert "`examples/data/instructions.jsonl`; license: ODC-By-1.0" in body
    # Counts by status and by filter reason, the filters applied, tokens, rows per split.
    assert "Trajectories by status: filtered 1, ok 7" in body
    assert "Filtered by reason: length 1" in body
    assert '"kind": "length"' in body and '"min_chars": 10' in body
    assert "Tokens: 800 prompt + 160 completion in 40 model calls" in body
    assert "Rows in this export: 7 (train 5, test 2)" in body and "shuffled with seed 5" in body
    # How to load and train, and a sample record.
    assert 'load_dataset("PATH_OR_REPO", split="test")' in body and "DPOTrainer" in body
    assert "## A sample record" in body and '"chosen"' in body
    assert load_dataset(str(tmp_path / "dpo"), split="test").num_rows == 2


def test_no_secret_reaches_the_run_or_export_folders(card_run: Path, tmp_path: Path) -> None:
    """The seeded record echoes the key; the card's sample must not (grep every file written here)."""
    for name in ("sft", "dpo", "corrections", "rl"):
        export_run(card_run, GRAPH, name, tmp_path / name)
    cards = [(tmp_path / name / "README.md").read_text() for name in ("sft", "dpo", "corrections", "rl")]
    assert any("***" in card for card in cards)  # the echoed key was in a sample and got redacted
    for path in [*tmp_path.glob("*/README.md"), card_run / "config.yaml", card_run / "filters.json"]:
        assert SECRET not in path.read_text(), path


def test_size_buckets_and_language_detection() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 50_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]
    english = "This sentence is written in plain English for the detector."
    french = "Cette phrase est écrite en français pour le détecteur de langue."
    assert detect_languages([english] * 3 + [french]) == ["en", "fr"]
    assert detect_languages([english] * 9 + [french]) == ["en"]  # under 20 %: not listed
    assert detect_languages(["12345", ""]) == ["und"]
