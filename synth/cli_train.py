"""``synth train sft|dpo|hybrid``: a YAML config (optional), ``--set KEY=VALUE`` overrides, explicit flags.

Precedence: config file < ``--set`` < explicit flags. ``--dry-run`` prints the resolved plan (device,
precision, trainable parameters, dataset size) without loading weights. Re-running the same command
resumes from the last checkpoint; ``--fresh`` starts over. Multi-GPU: ``accelerate launch -m synth.cli
train sft -c CONFIG`` (same config; see docs/training.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

train_app = typer.Typer(
    help="Fine-tune on `synth export` datasets (LoRA/QLoRA/full SFT, DPO, SFT->DPO, SMART two-stage).",
    no_args_is_help=True,
)
_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (keys: docs/training.md).")
]
SetOpt = Annotated[
    list[str], typer.Option("--set", "-s", help="Override a config key: KEY=VALUE (lora.r=8); repeatable.")
]
ModelOpt = Annotated[str | None, typer.Option(help="Base model: HF folder, hub id, or gemma-3-270m.")]
OutOpt = Annotated[str | None, typer.Option("--output-dir", "-o", help="Run folder (re-running resumes).")]
StepsOpt = Annotated[int | None, typer.Option(help="Stop after N optimizer steps (overrides epochs).")]
EpochsOpt = Annotated[float | None, typer.Option(help="Training epochs.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate.")]
PrecisionOpt = Annotated[str | None, typer.Option(help="auto | bf16 | fp16 | fp32.")]
TuningOpt = Annotated[str | None, typer.Option(help="lora | qlora | full.")]
MergeOpt = Annotated[
    bool | None, typer.Option("--merge/--no-merge", help="Also save the adapter merged into the base.")
]
LimitOpt = Annotated[int | None, typer.Option(help="Train on the first N rows only.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved plan and exit.")]
FreshOpt = Annotated[
    bool, typer.Option("--fresh", help="Delete this run folder's previous run and start over.")
]


def _overrides(sets: list[str], **flags: Any) -> dict[str, Any]:
    """``--set`` pairs, then the explicit flags that were given (None = not given)."""
    from train.config import deep_merge, parse_set

    explicit = {key: value for key, value in flags.items() if value is not None}
    return deep_merge(parse_set(sets), explicit)


def _flags(
    model: str | None,
    output_dir: str | None,
    max_steps: int | None,
    epochs: float | None,
    lr: float | None,
    precision: str | None,
    tuning: str | None,
    merge: bool | None,
    limit: int | None,
) -> dict[str, Any]:
    return {
        "model": model,
        "output_dir": output_dir,
        "max_steps": max_steps,
        "epochs": epochs,
        "learning_rate": lr,
        "precision": precision,
        "tuning": tuning,
        "merge": merge,
        "limit": limit,
    }


def _say(text: str) -> None:
    """Plain text to stderr: no markup (paths may hold brackets), no wrapping (paths stay copyable)."""
    _console.print(text, markup=False, highlight=False, soft_wrap=True)


def _report(outcome: Any) -> None:
    from train.runner import Plan

    if isinstance(outcome, list):
        for item in outcome:
            _say(item.describe() if isinstance(item, Plan) else item)
        return
    if isinstance(outcome, Plan):
        _say(outcome.describe())
        return
    _say(outcome.describe())
    print(outcome.final)


@train_app.command("sft")
def sft(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: Annotated[
        str | None, typer.Option(help="Dataset folder from `synth export` (messages or prompt/completion).")
    ] = None,
    output_dir: OutOpt = None,
    max_steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    precision: PrecisionOpt = None,
    tuning: TuningOpt = None,
    merge: MergeOpt = None,
    limit: LimitOpt = None,
    dry_run: DryOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """Supervised fine-tuning; loss only on assistant/completion tokens (never on prompts or passages)."""
    from train.config import SFTSettings, load_settings
    from train.sft import run_sft

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    settings = load_settings("sft", config, _overrides(set_, data=data, **flags))
    assert isinstance(settings, SFTSettings)
    _report(run_sft(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("dpo")
def dpo(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: Annotated[
        str | None, typer.Option(help="Preference dataset folder (`synth export -f dpo`).")
    ] = None,
    output_dir: OutOpt = None,
    beta: Annotated[float | None, typer.Option(help="DPO beta (strength of the KL anchor).")] = None,
    max_steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    precision: PrecisionOpt = None,
    tuning: TuningOpt = None,
    merge: MergeOpt = None,
    limit: LimitOpt = None,
    dry_run: DryOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """Direct preference optimisation; with LoRA the reference is the base with the adapter off."""
    from train.config import DPOSettings, load_settings
    from train.dpo import run_dpo

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    settings = load_settings("dpo", config, _overrides(set_, data=data, beta=beta, **flags))
    assert isinstance(settings, DPOSettings)
    _report(run_dpo(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("hybrid")
def hybrid(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    recipe: Annotated[
        str | None, typer.Option(help="eto: SFT then DPO; smart: SFT on short, then on long.")
    ] = None,
    stage1_data: Annotated[str | None, typer.Option(help="Stage 1 dataset (SFT; SMART: sft-short).")] = None,
    stage2_data: Annotated[
        str | None, typer.Option(help="Stage 2 dataset (eto: dpo; SMART: sft-long).")
    ] = None,
    model: ModelOpt = None,
    output_dir: OutOpt = None,
    max_steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    precision: PrecisionOpt = None,
    tuning: TuningOpt = None,
    merge: MergeOpt = None,
    limit: LimitOpt = None,
    dry_run: DryOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """Two stages in one command: SFT, merge, then DPO (eto) or SFT (smart) with a new LoRA on the merge."""
    from train.config import HybridSettings, load_settings
    from train.hybrid import run_hybrid

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    stages = {
        name: {"data": value}
        for name, value in (("stage1", stage1_data), ("stage2", stage2_data))
        if value is not None
    }
    settings = load_settings("hybrid", config, _overrides(set_, recipe=recipe, **stages, **flags))
    assert isinstance(settings, HybridSettings)
    _report(run_hybrid(settings, fresh=fresh, dry_run=dry_run, log=_say))
