"""`synth models serve-folder`: a folder an OpenAI-compatible server loads as is, the original untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.chat_template import PLAIN_CHAT_TEMPLATE, SECTION_STOP
from synth.errors import SynthError
from synth.serving import serve_folder


def _model(folder: Path, *, template: bool = False) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gemma3_text"}')
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 1, "stop_strings": "END"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    if template:
        (folder / "chat_template.jinja").write_text("{{ messages }}")
    return folder


def test_a_base_model_gets_the_template_and_stops_at_the_next_section(tmp_path: Path) -> None:
    source = _model(tmp_path / "model")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    out = serve_folder(source, tmp_path / "served")
    assert (out / "model.safetensors").is_symlink() and (out / "config.json").is_symlink()
    assert (out / "chat_template.jinja").read_text() == PLAIN_CHAT_TEMPLATE
    generation = out / "generation_config.json"
    assert not generation.is_symlink()
    assert json.loads(generation.read_text()) == {"eos_token_id": 1, "stop_strings": ["END", SECTION_STOP]}
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before  # the original is never modified
    serve_folder(source, out)  # again over its own earlier folder: same result, the stop string once
    assert json.loads(generation.read_text())["stop_strings"] == ["END", SECTION_STOP]


def test_a_model_with_its_own_template_is_only_linked(tmp_path: Path) -> None:
    out = serve_folder(_model(tmp_path / "model", template=True), tmp_path / "served")
    assert all(p.is_symlink() for p in out.iterdir())


def test_bad_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match=r"no config\.json"):
        serve_folder(tmp_path, tmp_path / "served")
    source = _model(tmp_path / "model")
    with pytest.raises(SynthError, match="must differ"):
        serve_folder(source, source)
