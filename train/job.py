"""One training run, whatever the method: resolve the plan, prepare the run folder, train, save.

Each method's module (``sft.py``, ``dpo.py``, ``reward_model.py``, ``grpo.py``, ``ppo.py``, ``mito.py``) only
builds its TRL trainer, from the arguments :class:`Job` gives all of them alike; everything around it
(hardware, precision, data, resume, outputs, merge) is here so all behave the same. Under ``accelerate
launch`` every process runs this; only the main process writes the run folder's files besides what the
Trainer itself saves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict

from synth.extras import require_extra
from train.config import (
    CommonSettings,
    DPOSettings,
    GRPOSettings,
    Kind,
    MITOSettings,
    PPOSettings,
    RewardSettings,
    SFTSettings,
    dump_settings,
)
from train.data import Format, fingerprint, is_conversational, load_rows, prepare
from train.model_setup import (
    Hardware,
    Resolved,
    check_report_to,
    check_tuning,
    count_parameters,
    detect_hardware,
    load_tokenizer,
    lora_config,
    quantization_config,
    resolve_model,
    resolve_precision,
    torch_dtype,
    trainer_arguments,
)
from train.runfolder import RunFolder, RunResult, is_main_process, merge_adapter, prepare_synced, write_json
from train.speed import THREADS_ENV, apply_threads, use_compact_head


@dataclass
class Plan:
    """What a run will do; ``--dry-run`` prints it, every run saves it as plan.json."""

    kind: str
    model: str
    base: str
    data: str
    data_format: str
    rows: int
    conversational: bool
    device: str
    precision: str
    tuning: str
    trainable_params: int | None
    total_params: int | None
    batch: str
    steps: str
    output_dir: str
    state: str = "new"
    resume_from: str | None = None
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        resume = f" from {self.resume_from}" if self.resume_from else ""
        params = "unknown (model config not readable)"
        if self.trainable_params is not None and self.total_params:
            share = 100 * self.trainable_params / self.total_params
            params = f"{self.trainable_params:,} trainable of {self.total_params:,} ({share:.2f}%)"
        lines = [
            f"{self.kind} run -> {self.output_dir} ({self.state}{resume})",
            f"  model      {self.model}" + (f" ({self.base})" if self.base != self.model else ""),
            f"  data       {self.data}: {self.rows} rows, {self.data_format}"
            + (" (conversational)" if self.conversational else ""),
            f"  device     {self.device}, precision {self.precision}, tuning {self.tuning}",
            f"  params     {params}",
            f"  batch      {self.batch}; {self.steps}",
        ]
        lines += [f"  warning    {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class Job:
    """Everything a trainer builder needs, resolved once."""

    settings: CommonSettings
    hardware: Hardware
    precision: Resolved
    base: str
    dataset: Any
    data_format: Format
    conversational: bool
    folder: RunFolder
    callbacks: Sequence[Any]
    tokenizer: Any = None
    head: str = "causal"  # "score": a reward model (sequence classification)

    def config_arguments(self, only_fields_of: type | None = None) -> dict[str, Any]:
        """The run's shared TRL config arguments (:func:`train.model_setup.trainer_arguments`).

        ``only_fields_of``: keep only the fields that config dataclass has (GRPO's and PPO's configs lack
        some of the shared ones); without it an unknown field stays an error.
        """
        arguments = trainer_arguments(self.settings, self.hardware, self.precision, self.folder.checkpoints)
        if only_fields_of is None:
            return arguments
        known = {f.name for f in fields(only_fields_of)}
        return {key: value for key, value in arguments.items() if key in known}

    def trainer_inputs(self, task_type: str = "CAUSAL_LM") -> dict[str, Any]:
        """The keyword arguments every TRL trainer built from a model path takes alike: the model (by
        path), its tokenizer, the LoRA config (``task_type="SEQ_CLS"`` for reward models), the 4-bit
        config for QLoRA and the callbacks. Each trainer adds its config, dataset and own parts."""
        return {
            "model": self.base,
            "processing_class": self.tokenizer,
            "peft_config": lora_config(self.settings, task_type=task_type),
            "quantization_config": quantization_config(self.settings, self.precision),
            "callbacks": list(self.callbacks),
        }


class RunOptions(TypedDict, total=False):
    """The keyword options of every ``run_<kind>`` function, passed on to :func:`execute` (its defaults)."""

    fresh: bool
    dry_run: bool
    callbacks: Sequence[Any]
    log: Callable[[str], None]


TrainerBuilder = Callable[[Job], Any]
#: Settings of the commands that train one model on one dataset (all but hybrid).
DataSettings = SFTSettings | DPOSettings | RewardSettings | GRPOSettings | PPOSettings | MITOSettings


def require_training(command: str) -> None:
    """TRL, PEFT and Accelerate are the ``train`` extra (PPO: the ``ppo`` extra, TRL 1.12); a plain install
    lacks them, so say which ``pip install`` before any model or data loads."""
    extra = "ppo" if command == "ppo" else "train"
    require_extra(f"synth train {command}", extra, "trl", "peft", "accelerate")


def build_plan(kind: Kind, settings: DataSettings) -> tuple[Plan, Job]:
    """Resolve hardware, precision, model and data, and count parameters on an empty model."""
    require_training(kind)
    hardware = detect_hardware(settings.device)
    precision = resolve_precision(settings.precision, hardware)
    check_tuning(settings, hardware)
    check_report_to(settings)
    base = resolve_model(settings.model)
    dataset, fmt = prepare(load_rows(settings.data, settings.limit), kind, settings.data)
    head = "score" if kind == "reward" else "causal"
    counts = count_parameters(base, settings, head)
    world = max(hardware.gpus, 1)
    per_step = settings.batch_size * settings.grad_accum * world
    # GRPO's batch counts completions: every prompt yields num_generations of them.
    examples = len(dataset) * (settings.num_generations if isinstance(settings, GRPOSettings) else 1)
    steps = (
        f"{settings.max_steps} steps"
        if settings.max_steps > 0
        else f"{settings.epochs:g} epochs ~ {-(-examples // per_step) * settings.epochs:.0f} steps"
    )
    warnings: list[str] = []
    if settings.padding_free and hardware.device == "cpu":
        warnings.append("padding_free flattens batches; TRL supports it with flash-attention only (GPU)")
    if settings.packing and kind == "dpo":
        warnings.append("packing is an SFT option; DPO ignores it")
    plan = Plan(
        kind=kind,
        model=settings.model,
        base=base,
        data=settings.data,
        data_format=fmt,
        rows=len(dataset),
        conversational=is_conversational(dataset, fmt),
        device=hardware.describe(),
        precision=precision,
        tuning=settings.tuning,
        trainable_params=counts[0] if counts else None,
        total_params=counts[1] if counts else None,
        batch=f"{settings.batch_size}/device x {settings.grad_accum} accum x {world} device(s) = {per_step}",
        steps=steps,
        output_dir=settings.output_dir,
        warnings=warnings,
    )
    job = Job(
        settings=settings,
        hardware=hardware,
        precision=precision,
        base=base,
        dataset=dataset,
        data_format=fmt,
        conversational=plan.conversational,
        folder=RunFolder(Path(settings.output_dir)),
        callbacks=(),
        head=head,
    )
    return plan, job


def execute(
    kind: Kind,
    settings: DataSettings,
    builder: TrainerBuilder,
    *,
    fresh: bool = False,
    dry_run: bool = False,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = print,
) -> RunResult | Plan:
    """Run (or with ``dry_run`` only plan) one training run of ``kind`` with ``builder``'s trainer."""
    plan, job = build_plan(kind, settings)
    job.callbacks = callbacks
    folder = job.folder
    if dry_run:
        saved = folder.saved_config()
        if saved is not None:
            plan.state = "exists: re-running resumes or refuses on a changed config"
            plan.resume_from = folder.last_checkpoint()
        return plan
    data_print = fingerprint(settings.data, plan.rows)
    state, checkpoint = prepare_synced(folder, dump_settings(kind, settings), data_print, fresh)
    plan.state, plan.resume_from = state, checkpoint
    if state == "done":
        return folder.completed_result(log)
    if is_main_process():
        write_json(folder.path / "plan.json", asdict(plan))
    log(plan.describe())
    if settings.report_to == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(folder.path / "logs"))
    job.tokenizer = load_tokenizer(job.base)
    use_compact_head(settings.head_on == "loss")
    if job.hardware.device == "cpu":
        log(f"torch threads: {apply_threads()} (the idle cores now; ${THREADS_ENV} pins it)")
    trainer = builder(job)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    return finish(kind, job, trainer, output, checkpoint, time.monotonic() - started)


def finish(kind: str, job: Job, trainer: Any, output: Any, resumed: str | None, seconds: float) -> RunResult:
    """Save the adapter (or model) with the tokenizer, merge if asked, and write result.json last."""
    settings, folder = job.settings, job.folder
    lora = settings.tuning != "full"
    target = folder.path / ("adapter" if lora else "model")
    trainer.save_model(str(target))
    result = RunResult(
        kind=kind,
        output_dir=str(folder.path),
        status="resumed" if resumed else "trained",
        global_step=int(output.global_step),
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        resumed_from=resumed,
        seconds=round(seconds, 2),
    )
    if lora:
        result.adapter = str(target)
    else:
        result.model = str(target)
    merged = folder.path / "merged"
    if lora and settings.merge:
        result.merged = str(merged)
    if trainer.is_world_process_zero():
        # The tokenizer carries the chat template the model was trained with (the plain one for base
        # models): evaluation and serving render prompts with exactly that template.
        job.tokenizer.save_pretrained(str(target))
        if result.merged:
            merge_adapter(job.base, target, merged, torch_dtype(job.precision, "lora"), job.head)
        folder.write_result(result)
    # Other processes wait for the merge: a hybrid's stage 2 loads it right after.
    trainer.accelerator.wait_for_everyone()
    return result
