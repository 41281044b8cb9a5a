"""The run folder of one training run, and what makes re-running the same command resume it.

Layout::

    OUTPUT_DIR/
      config.yaml            resolved config (file + overrides), with its kind
      data_fingerprint.json  sha256 of the training files + row count
      plan.json              device, precision, parameters, dataset size
      checkpoints/           Trainer checkpoints (checkpoint-N): the resume points
      adapter/ | model/      the result: LoRA adapter (+ tokenizer) or the fully fine-tuned model
      merged/                adapter merged into the base (merge: true; always for a hybrid's stage 1)
      result.json            written last: the run is complete

A second run with the same config and data resumes from the last checkpoint, or does nothing when
``result.json`` exists. A different config (other than keys in ``RESUMABLE_KEYS``) or different data is
refused: continuing a run on something else would silently mix two experiments.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from train.config import RESUMABLE_KEYS
from train.errors import TrainError


@dataclass
class RunResult:
    """What a finished run produced. ``status``: ``trained``, ``resumed`` or ``already complete``."""

    kind: str
    output_dir: str
    status: str
    adapter: str | None = None
    model: str | None = None
    merged: str | None = None
    global_step: int = 0
    train_loss: float | None = None
    resumed_from: str | None = None
    seconds: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> str:
        """The folder to evaluate or serve: merged model if any, else the adapter or full model."""
        return str(self.merged or self.model or self.adapter or self.output_dir)

    def describe(self) -> str:
        head = f"{self.kind}: {self.status} -> {self.final}"
        loss = f", loss {self.train_loss:.4f}" if self.train_loss is not None else ""
        resumed = f", resumed from {self.resumed_from}" if self.resumed_from else ""
        return f"{head} ({self.global_step} steps{loss}{resumed}, {self.seconds:.1f}s)"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


#: Keys holding paths: compared as absolute paths, so ``out`` and ``/abs/out`` are the same run.
_PATH_KEYS = ("model", "data", "output_dir")


def _normalized(config: dict[str, Any]) -> dict[str, Any]:
    flat = _flatten(config)
    for key, value in flat.items():
        if (
            key.rsplit(".", 1)[-1] in _PATH_KEYS
            and isinstance(value, str)
            and Path(value).expanduser().exists()
        ):
            flat[key] = str(Path(value).expanduser().resolve())
    return flat


def config_changes(
    old: dict[str, Any], new: dict[str, Any], ignore: frozenset[str] = frozenset()
) -> list[str]:
    """``key: old -> new`` for every differing key (nested keys dotted), minus ``ignore``."""
    a, b = _normalized(old), _normalized(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in ignore and a.get(k) != b.get(k)
    ]


def write_json(path: Path, data: Any) -> None:
    """Atomic write: a killed process never leaves half a file (result.json marks completion)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def fingerprint_file(self) -> Path:
        return self.path / "data_fingerprint.json"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def saved_config(self) -> dict[str, Any] | None:
        if not self.config_file.is_file():
            return None
        return yaml.safe_load(self.config_file.read_text(encoding="utf-8"))

    def last_checkpoint(self) -> str | None:
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(self.checkpoints)) if self.checkpoints.is_dir() else None

    def read_result(self) -> RunResult | None:
        if not self.result_file.is_file():
            return None
        return RunResult(**json.loads(self.result_file.read_text(encoding="utf-8")))

    def completed_result(self, log: Callable[[str], None]) -> RunResult:
        """The saved result of a finished run, marked ``already complete`` (re-running does nothing)."""
        previous = self.read_result()
        assert previous is not None, f"{self.path}: prepared as done but result.json is missing"
        previous.status = "already complete"
        log(f"{self.path} is already complete (result.json); use --fresh to train again")
        return previous

    def write_result(self, result: RunResult) -> None:
        write_json(self.result_file, asdict(result))

    def clear(self) -> None:
        """``--fresh``: delete a previous run here (only if it is one: never a folder we did not write)."""
        if not self.path.exists():
            return
        if self.saved_config() is None and any(self.path.iterdir()):
            raise TrainError(
                f"{self.path} is not empty and is not a `synth train` run folder (no config.yaml); "
                "refusing to delete it: choose another output_dir"
            )
        shutil.rmtree(self.path)

    def prepare(
        self, config: dict[str, Any], fingerprint: dict[str, Any] | None, *, write: bool = True
    ) -> tuple[str, str | None]:
        """Check the folder against this run; return (``new``|``resume``|``done``, checkpoint to resume).

        Writes config.yaml and data_fingerprint.json for a new run, and updates config.yaml when only
        resumable keys (e.g. ``max_steps``) changed. ``write=False`` only reads (non-main processes).
        """
        saved = self.saved_config()
        if saved is None and not write:
            return "new", None
        if saved is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise TrainError(
                    f"output_dir {self.path} is not empty and is not a `synth train` run folder "
                    "(no config.yaml); "
                    "choose a new or empty output_dir"
                )
            self._write(config, fingerprint)
            return "new", None
        if saved.get("kind") != config.get("kind"):
            raise TrainError(
                f"{self.path} holds a `synth train {saved.get('kind')}` run, not a {config.get('kind')} run; "
                "choose another output_dir (or --fresh to delete that run)"
            )
        changes = config_changes(saved, config, ignore=RESUMABLE_KEYS)
        if changes:
            raise TrainError(
                f"{self.path} holds a run with a different config ({'; '.join(changes)}); "
                "re-run with --fresh "
                "to delete it and start over, or choose another output_dir"
            )
        if fingerprint is not None and self.fingerprint_file.is_file():
            old = json.loads(self.fingerprint_file.read_text(encoding="utf-8"))
            if old.get("sha256") != fingerprint["sha256"]:
                raise TrainError(
                    f"the training data changed since {self.path} was started "
                    f"({old.get('rows')} rows, sha256 {old.get('sha256', '')[:12]} -> "
                    f"{fingerprint['rows']} rows, {fingerprint['sha256'][:12]}); "
                    "re-run with --fresh to start over on the new data, or choose another output_dir"
                )
        if self.result_file.is_file() and not config_changes(saved, config):
            return "done", None
        if write:
            self._write(config, fingerprint)
        checkpoint = self.last_checkpoint()
        return ("resume", checkpoint) if checkpoint else ("new", None)

    def _write(self, config: dict[str, Any], fingerprint: dict[str, Any] | None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.result_file.unlink(missing_ok=True)  # extending a finished run (e.g. more steps): not done yet
        tmp = self.config_file.with_name("config.yaml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.config_file)
        if fingerprint is not None:
            write_json(self.fingerprint_file, fingerprint)


def is_main_process() -> bool:
    """Rank 0 under ``accelerate launch``/torchrun (``RANK``), or a plain single process."""
    return os.environ.get("RANK", "0") == "0"


def prepare_synced(
    folder: RunFolder, config: dict[str, Any], fingerprint: dict[str, Any] | None, fresh: bool
) -> tuple[str, str | None]:
    """:meth:`RunFolder.prepare` for every process of a launch: the main process clears and writes, the
    others read the folder after a barrier, so all of them resume from the same checkpoint."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if fresh:
            folder.clear()
        return folder.prepare(config, fingerprint)
    from accelerate import PartialState

    state = PartialState()
    outcome: tuple[str, str | None] = ("new", None)
    if state.is_main_process:
        if fresh:
            folder.clear()
        outcome = folder.prepare(config, fingerprint)
    state.wait_for_everyone()
    if not state.is_main_process:
        outcome = folder.prepare(config, fingerprint, write=False)
    return outcome


def merge_adapter(base: str, adapter: Path, out: Path, dtype: Any, head: str = "causal") -> Path:
    """Merge a LoRA adapter into its (unquantised) base and save a plain model folder with the tokenizer.

    The base is reloaded unquantised even after QLoRA: merging into 4-bit weights would round the update
    away. Written to a temp folder first, then renamed, so ``merged/`` is never half written.
    ``head="score"``: a reward model (sequence classification, one label), whose adapter carries its head.
    The sum is formed in fp32 and rounded to ``dtype`` once: merging into bf16 weights would round the
    (small) update twice.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if head == "score":
        model = AutoModelForSequenceClassification.from_pretrained(base, dtype=torch.float32, num_labels=1)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().to(dtype)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter)).save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
