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
    help="Fine-tune on `synth export` datasets (SFT, DPO, SFT->DPO, SMART two-stage, reward models, GRPO, "
    "PPO, ATM's MITO).",
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


def _reward_sources(specs: list[str]) -> list[dict[str, Any]]:
    """``--reward KIND[:WEIGHT][=MODEL]`` (``f1:0.5``, ``judge=openai:M@URL``, ``model=out/rm``)."""
    from train.config import ConfigError

    sources = []
    for spec in specs:
        head, _, model = spec.partition("=")
        kind, _, weight = head.partition(":")
        source: dict[str, Any] = {"kind": kind.strip()}
        if weight:
            try:
                source["weight"] = float(weight)
            except ValueError:
                raise ConfigError(f"--reward {spec!r}: weight {weight!r} is not a number") from None
        if model:
            source["model"] = model.strip()
        sources.append(source)
    return sources


RewardOpt = Annotated[
    list[str],
    typer.Option(
        "--reward",
        help="KIND[:WEIGHT][=MODEL]: exact_match, f1, judge=MODEL_SPEC, model=REWARD_RUN; repeatable (grpo).",
    ),
]
RlDataOpt = Annotated[
    str | None, typer.Option(help="Prompt dataset (`synth export -f rl`): prompt + answers.")
]


@train_app.command("reward")
def reward(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: Annotated[
        str | None, typer.Option(help="Preference dataset folder (`synth export -f dpo`).")
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
    """Reward model (one-output classification head) on preference pairs, for grpo/ppo rewards."""
    from train.config import RewardSettings, load_settings
    from train.reward import run_reward

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    settings = load_settings("reward", config, _overrides(set_, data=data, **flags))
    assert isinstance(settings, RewardSettings)
    _report(run_reward(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("grpo")
def grpo(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: RlDataOpt = None,
    reward: RewardOpt = [],  # noqa: B006
    num_generations: Annotated[int | None, typer.Option(help="Completions per prompt (the group).")] = None,
    max_completion_length: Annotated[int | None, typer.Option(help="Tokens per completion.")] = None,
    beta: Annotated[float | None, typer.Option(help="KL coefficient (0: no reference model).")] = None,
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
    """GRPO with weighted rewards: exact match / F1 on gold answers, a judge role, a reward model."""
    from train.config import GRPOSettings, load_settings
    from train.grpo import run_grpo

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    extra = {
        "data": data,
        "rewards": _reward_sources(reward) if reward else None,
        "num_generations": num_generations,
        "max_completion_length": max_completion_length,
        "beta": beta,
    }
    settings = load_settings("grpo", config, _overrides(set_, **extra, **flags))
    assert isinstance(settings, GRPOSettings)
    _report(run_grpo(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("ppo")
def ppo(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: RlDataOpt = None,
    reward: Annotated[
        str | None,
        typer.Option(help="exact_match, f1 or model=REWARD_RUN (one reward; default exact_match)."),
    ] = None,
    value_model: Annotated[
        str | None, typer.Option(help="Critic init (default: reward model, else base).")
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
    """Actor-critic PPO (TRL 1.12; runs in the PPO environment: `make venv-ppo`)."""
    from train.config import PPOSettings, load_settings
    from train.ppo import require_ppo, run_ppo

    require_ppo()
    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    extra = {
        "data": data,
        "reward": _reward_sources([reward])[0] if reward else None,
        "value_model": value_model,
    }
    settings = load_settings("ppo", config, _overrides(set_, **extra, **flags))
    assert isinstance(settings, PPOSettings)
    _report(run_ppo(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("mito")
def mito(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: ModelOpt = None,
    data: Annotated[
        str | None, typer.Option(help="MITO dataset: prompt (clean), adv_prompt (attacked), answer.")
    ] = None,
    beta: Annotated[
        float | None, typer.Option(help="Weight of KL(attacked || clean) on answer tokens.")
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
    """ATM's MITO: CE on the clean context + beta * token KL between attacked and clean contexts."""
    from train.config import MITOSettings, load_settings
    from train.mito import run_mito

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, merge, limit)
    settings = load_settings("mito", config, _overrides(set_, data=data, beta=beta, **flags))
    assert isinstance(settings, MITOSettings)
    _report(run_mito(settings, fresh=fresh, dry_run=dry_run, log=_say))


@train_app.command("atm")
def atm(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006
    model: Annotated[
        str | None, typer.Option(help="The generator's starting weights (folder or name).")
    ] = None,
    attacker: Annotated[
        str | None, typer.Option(help="The attacker's starting weights (default: --model).")
    ] = None,
    attacker_spec: Annotated[
        str | None,
        typer.Option(help="A model spec serving the starting attacker (default local:ATTACKER)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="ATM seeds .jsonl (question, answers, passage/ctxs) to synthesize on.")
    ] = None,
    eval_data: Annotated[
        str | None, typer.Option(help="Held-out QA .jsonl (disjoint from --data) for EM under attack.")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="ATM iterations T (raising it extends a run).")
    ] = None,
    initial_sft: Annotated[
        bool | None,
        typer.Option(
            "--initial-sft/--no-initial-sft", help="Stage 0: SFT the generator on the ATM sft export."
        ),
    ] = None,
    eval_limit: Annotated[int | None, typer.Option(help="Evaluate on the first N held-out rows.")] = None,
    output_dir: OutOpt = None,
    max_steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    precision: PrecisionOpt = None,
    tuning: TuningOpt = None,
    limit: Annotated[int | None, typer.Option(help="Synthesize on the first N seed rows only.")] = None,
    dry_run: DryOpt = False,
    fresh: FreshOpt = False,
) -> None:
    """ATM end to end: synthesize with the attacker, rank by generator NLL, attacker DPO, generator MITO."""
    from train.atm_config import load_atm_settings
    from train.atm_loop import run_atm_loop

    flags = _flags(model, output_dir, max_steps, epochs, lr, precision, tuning, None, limit)
    extra = {
        "attacker": attacker,
        "attacker_spec": attacker_spec,
        "data": data,
        "eval_data": eval_data,
        "iterations": iterations,
        "initial_sft": initial_sft,
        "eval_limit": eval_limit,
    }
    settings = load_atm_settings(config, _overrides(set_, **extra, **flags))
    outcome = run_atm_loop(settings, fresh=fresh, dry_run=dry_run, log=_say)
    if isinstance(outcome, list):
        for line in outcome:
            _say(line)
        return
    print(outcome["final_generator"])
