"""Every YAML spec error names the file, the line and the node; hostile specs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.spec import SpecError, load_spec
from synth.spec.expr import ExpressionError, parse_condition

BASE = """\
name: loop
seed: [task]
roles:
  writer:
    instructions: You write.
    prompt: "Task: {{ task }} {% if critique %}Fix: {{ critique.note }}{% endif %}"
    output:
      properties: {draft: {type: string}}
      required: [draft]
  critic:
    instructions: You criticise.
    prompt: "Draft: {{ write.draft }}"
    output:
      properties:
        verdict: {enum: [ok, fix]}
        note: {type: string}
      required: [verdict, note]
nodes:
  write: writer
  critique: {role: critic, max_rounds: 3}
edges:
  - {from: START, to: write}
  - {from: write, to: critique}
  - {from: critique, to: END, when: 'critique.verdict == "ok"'}
  - {from: critique, to: write}
"""


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(text)
    load_spec(path)


def _error(tmp_path: Path, text: str, marker: str) -> str:
    """The SpecError message, checked to start with graph.yaml:LINE where LINE holds ``marker``."""
    line = next(i for i, row in enumerate(text.splitlines(), 1) if marker in row)
    with pytest.raises(SpecError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'graph.yaml'}:{line}:"), message
    return message


def test_the_base_spec_is_valid(tmp_path: Path) -> None:
    _load(tmp_path, BASE)


def test_unknown_role(tmp_path: Path) -> None:
    text = BASE.replace("{role: critic, max_rounds: 3}", "{role: critc, max_rounds: 3}")
    message = _error(tmp_path, text, "role: critc")
    assert "node 'critique': unknown role 'critc'; roles defined under roles: writer, critic" in message


def test_edge_to_missing_node(tmp_path: Path) -> None:
    text = BASE.replace("{from: write, to: critique}", "{from: write, to: critic}")
    message = _error(tmp_path, text, "to: critic}")
    assert "edge to missing node 'critic'; nodes: critique, write" in message


def test_cycle_without_exit(tmp_path: Path) -> None:
    text = BASE.replace("  - {from: critique, to: END, when: 'critique.verdict == \"ok\"'}\n", "")
    message = _error(tmp_path, text, "  write: writer")
    assert "cycle write -> critique -> write has no exit" in message


def test_cycle_without_round_limit(tmp_path: Path) -> None:
    text = BASE.replace("{role: critic, max_rounds: 3}", "{role: critic}")
    message = _error(tmp_path, text, "  write: writer")
    assert "cycle write -> critique -> write has no round limit: set `max_rounds: N`" in message


def test_template_variable_no_node_provides(tmp_path: Path) -> None:
    text = BASE.replace("Draft: {{ write.draft }}", "Draft: {{ write.draft }} {{ rubric }}")
    message = _error(tmp_path, text, "Draft: {{")
    assert (
        "node 'critique': template variable 'rubric' (role critic) is provided by no upstream node" in message
    )
    assert "available here: critique, history, round, seed, task, visits, write" in message


def test_template_variable_of_a_node_that_runs_later(tmp_path: Path) -> None:
    text = BASE.replace("{from: critique, to: write}", "{from: critique, to: END}")
    message = _error(tmp_path, text, "Task: {{ task }}")
    assert (
        "node 'write': template variable 'critique' (role writer) is node 'critique', which does not run "
        "before node 'write': no path leads from it to 'write'"
    ) in message


def test_condition_on_unknown_output_field(tmp_path: Path) -> None:
    text = BASE.replace('critique.verdict == "ok"', 'critique.verdcit == "ok"')
    message = _error(tmp_path, text, "verdcit")
    assert "node 'critique' (role critic) has no output field 'verdcit'; fields: note, verdict" in message


def test_shape_errors_name_the_line(tmp_path: Path) -> None:
    text = BASE.replace("  write: writer\n", "  write: {role: writer, retries: 2}\n")
    message = _error(tmp_path, text, "retries: 2")
    assert "nodes.write.retries: Extra inputs are not permitted" in message


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("  write: writer\n", "  write: writer\n  write: critic\n")
    message = _error(tmp_path, text, "write: critic")
    assert "duplicate key 'write'" in message


def test_unsupported_schema_keyword(tmp_path: Path) -> None:
    text = BASE.replace(
        "properties: {draft: {type: string}}", "properties: {draft: {anyOf: [{type: string}]}}"
    )
    message = _error(tmp_path, text, "anyOf")
    assert "role 'writer' output: unsupported JSON Schema keyword(s) anyOf" in message


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("name: loop", "name: !!python/object/apply:os.system ['touch pwned']")
    message = _error(tmp_path, text, "!!python")
    assert "Python tags are not allowed" in message
    assert not (Path.cwd() / "pwned").exists()


def test_dunder_import_in_a_condition_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('critique.verdict == "ok"', '__import__("os").system("touch pwned")')
    message = _error(tmp_path, text, "__import__")
    assert "function calls are not allowed" in message or "names starting with _ are not allowed" in message
    text = BASE.replace('critique.verdict == "ok"', "critique.__class__ == 1")
    assert "'__class__': names starting with _ are not allowed" in _error(tmp_path, text, "__class__")


def test_dunder_access_in_a_template_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("Draft: {{ write.draft }}", "Draft: {{ write.__class__.__mro__ }}")
    message = _error(tmp_path, text, "__mro__")
    assert "names and attributes starting with _ are not allowed" in message
    text = BASE.replace("Draft: {{ write.draft }}", "Draft: {{ write|attr('x') }}")
    assert "attr filter" in _error(tmp_path, text, "attr(")


def test_python_output_models_must_be_allowlisted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE.replace(
        "      properties: {draft: {type: string}}\n      required: [draft]", " os.path:join"
    ).replace("    output:\n os.path:join", "    output: os.path:join")
    message = _error(tmp_path, text, "os.path:join")
    assert "output model 'os.path:join' is not allowlisted" in message and "SYNTH_ALLOWED_MODELS" in message
    built_in = text.replace("os.path:join", "roles.coevol:Verdict")
    monkeypatch.setenv("SYNTH_ALLOWED_MODELS", "")
    _load(tmp_path, built_in)  # the built-in roles package is always allowed
    elsewhere = text.replace("os.path:join", "json.decoder:JSONDecoder")
    assert "is not allowlisted" in _error(tmp_path, elsewhere, "json.decoder")
    monkeypatch.setenv("SYNTH_ALLOWED_MODELS", "json")
    message = _error(tmp_path, elsewhere, "json.decoder")
    assert "output model 'json.decoder:JSONDecoder' is not a pydantic BaseModel subclass" in message


def test_expression_language() -> None:
    condition = parse_condition('judge.verdict == "accept" and (round >= 2 or not judge.ok) and 3 in xs')
    assert condition({"judge": {"verdict": "accept", "ok": False}, "round": 1, "xs": [3]})
    assert not condition({"judge": {"verdict": "reject"}, "round": 5, "xs": [3]})
    assert condition.names == {"judge", "round", "xs"}
    for hostile in ["open('x')", "(lambda: 1)()", "[x for x in y]", "a.__dict__", "x[y]", "a if b else c"]:
        with pytest.raises(ExpressionError):
            parse_condition(hostile)
