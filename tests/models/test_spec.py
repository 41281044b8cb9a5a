"""Model spec strings: parsing, errors that teach the accepted forms, and backend wiring."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient

from synth.errors import ModelSpecError
from synth.models import ClientOptions, ManagedClient, ModelSpec, make_client, parse_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4o-mini", ModelSpec(backend="openai", model="gpt-4o-mini")),
        (
            "openai:Qwen/Qwen2.5-7B-Instruct@http://localhost:8000/v1/",
            ModelSpec(
                backend="openai", model="Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1"
            ),
        ),
        (
            "openai:llama3:8b@https://gpu.example.com/v1",
            ModelSpec(backend="openai", model="llama3:8b", base_url="https://gpu.example.com/v1"),
        ),
        ("local:gemma-3-270m", ModelSpec(backend="local", model="gemma-3-270m")),
        (
            "local:/models/my-sft",
            ModelSpec(backend="local", model="/models/my-sft", path=Path("/models/my-sft")),
        ),
        ("local:./ckpt", ModelSpec(backend="local", model="./ckpt", path=Path("ckpt"))),
        (
            "replay:tests/data/r.jsonl",
            ModelSpec(backend="replay", model="r", path=Path("tests/data/r.jsonl")),
        ),
        ("  OpenAI:gpt-4o ", ModelSpec(backend="openai", model="gpt-4o")),
    ],
)
def test_valid_specs(spec: str, expected: ModelSpec) -> None:
    parsed = parse_spec(spec)
    assert parsed == expected
    assert parse_spec(str(parsed)) == parsed  # canonical string round-trips


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "empty"),
        ("gpt-4o-mini", "no backend prefix"),
        ("anthropic:claude", "unknown backend 'anthropic'"),
        ("openai:", "nothing follows"),
        ("openai:@http://localhost:8000/v1", "model name is empty"),
        ("openai:m@localhost:8000/v1", "must be a URL"),
        ("openai:m@http://", "no host"),
        ("local:", "nothing follows"),
    ],
)
def test_bad_specs_show_the_accepted_forms(spec: str, why: str) -> None:
    with pytest.raises(ModelSpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert why in message
    for form in ("openai:MODEL", "openai:MODEL@BASE_URL", "local:", "replay:"):
        assert form in message


def test_spec_is_frozen() -> None:
    spec = parse_spec("openai:gpt-4o")
    with pytest.raises(ValueError):
        spec.model = "other"  # type: ignore[misc]


def test_local_backend_is_wired_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded backend is built by its own module; here only the wiring is checked."""
    built: list[tuple[str, dict[str, Any]]] = []

    class FakeLocal(ReplayChatCompletionClient):
        def __init__(self, model: str, **kwargs: Any) -> None:
            super().__init__(["local says hi"])
            built.append((model, kwargs))

    fake = types.ModuleType("synth.models.local")
    fake.LocalChatCompletionClient = FakeLocal  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "synth.models.local", fake)
    client = make_client("local:gemma-3-270m", ClientOptions(backend_options={"dtype": "bfloat16"}))
    assert isinstance(client, ManagedClient) and isinstance(client.inner, FakeLocal)
    assert built == [("gemma-3-270m", {"dtype": "bfloat16"})] and client.spec == "local:gemma-3-270m"
    make_client("local:~/ckpt")
    assert built[-1][0] == str(Path("~/ckpt").expanduser())


def test_make_client_accepts_a_parsed_spec(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('"hi"\n')
    client = make_client(ModelSpec(backend="replay", model="r", path=path), ClientOptions(max_concurrency=2))
    assert client.options.max_concurrency == 2 and client.spec == f"replay:{path}"
