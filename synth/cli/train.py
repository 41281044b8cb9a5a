"""``synth train sft|dpo|hybrid|reward|grpo|ppo|mito|atm``: a YAML config (optional), ``--set`` overrides,
explicit flags.

Precedence: config file < ``--set`` < explicit flags. ``--dry-run`` prints the resolved plan (device,
precision, trainable parameters, dataset size) without loading weights. Re-running the same command
resumes from the last checkpoint; ``--fresh`` starts over. Multi-GPU: ``accelerate launch -m synth
train sft -c CONFIG`` (same config; see docs/training.md).

Every method is one :class:`Method` value (its own options, its runner); :func:`command` builds the typer
command from it with the options all methods share, so a method states only what is its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
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


@dataclass(frozen=True)
class Option:
    """One option of a train command: the parameter (typer derives ``--name`` from it unless ``decls``
    name the flags), its help, and the config key it sets (``key=None``: not a config key)."""

    name: str
    type: Any
    help: str
    decls: tuple[str, ...] = ()
    default: Any = None
    key: str | None = ""  # "": the same as name
    #: The config value for a given flag value (``--reward f1:0.5`` -> a reward source).
    convert: Callable[[Any], Any] | None = None

    def parameter(self) -> inspect.Parameter:
        annotation = Annotated[self.type, typer.Option(*self.decls, help=self.help)]  # type: ignore[name-defined]
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(self.name, kind, default=self.default, annotation=annotation)

    def config(self, value: Any) -> dict[str, Any]:
        """What this flag sets in the config: nothing when not given (None, or no repeat of a list)."""
        if self.key is None or value is None or value == []:
            return {}
        return {self.key or self.name: self.convert(value) if self.convert else value}


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


#: Options every method has, by parameter name; a method may replace one (ATM's --model) or drop it.
SHARED = {
    option.name: option
    for option in (
        Option("config", Path | None, "YAML config (keys: docs/training.md).", ("--config", "-c"), key=None),
        Option(
            "set_",
            list[str],
            "Override a config key: KEY=VALUE (lora.r=8); repeatable.",
            ("--set", "-s"),
            [],
            key=None,
        ),
        Option("model", str | None, "Base model: HF folder, hub id, or gemma-3-270m."),
        Option("output_dir", str | None, "Run folder (re-running resumes).", ("--output-dir", "-o")),
        Option("max_steps", int | None, "Stop after N optimizer steps (overrides epochs)."),
        Option("epochs", float | None, "Training epochs."),
        Option("lr", float | None, "Learning rate.", ("--lr",), key="learning_rate"),
        Option("precision", str | None, "auto | bf16 | fp16 | fp32."),
        Option("tuning", str | None, "lora | qlora | full."),
        Option("merge", bool | None, "Also save the adapter merged into the base.", ("--merge/--no-merge",)),
        Option("limit", int | None, "Train on the first N rows only."),
        Option("dry_run", bool, "Print the resolved plan and exit.", ("--dry-run",), False, key=None),
        Option(
            "fresh",
            bool,
            "Delete this run folder's previous run and start over.",
            ("--fresh",),
            False,
            key=None,
        ),
    )
}
#: Where a method's own options go: after --config, --set and --model, before the training options.
HEAD = ("config", "set_", "model")
TAIL = (
    "output_dir", "max_steps", "epochs", "lr", "precision", "tuning", "merge", "limit", "dry_run", "fresh",
)  # fmt: skip


def _load_settings(kind: str, config: Path | None, overrides: dict[str, Any]) -> Any:
    from train.config import load_settings

    return load_settings(kind, config, overrides)  # type: ignore[arg-type]


def _say(text: str) -> None:
    """Plain text to stderr: no markup (paths may hold brackets), no wrapping (paths stay copyable)."""
    _console.print(text, markup=False, highlight=False, soft_wrap=True)


def _report(outcome: Any) -> None:
    from train.job import Plan

    if isinstance(outcome, list):
        for item in outcome:
            _say(item.describe() if isinstance(item, Plan) else item)
        return
    if isinstance(outcome, Plan):
        _say(outcome.describe())
        return
    _say(outcome.describe())
    print(outcome.final)


@dataclass(frozen=True)
class Method:
    """One ``synth train`` command: its help, its own options, and where its runner lives (imported when
    the command runs, so ``synth --help`` never imports torch)."""

    name: str
    help: str
    #: ``module:function`` called as ``run(settings, fresh=, dry_run=, log=)``.
    runner: str
    #: Its own options, in --help order after --model; a shared option's name here moves it to that place.
    options: tuple[Option | str, ...] = ()
    #: Shared options replaced (an :class:`Option`) or dropped (None) for this method.
    shared: dict[str, Option | None] = field(default_factory=dict)
    #: ``module:function`` called first, to refuse early (PPO's separate environment).
    check: str | None = None
    load: Callable[[str, Path | None, dict[str, Any]], Any] = _load_settings
    report: Callable[[Any], None] = _report

    def layout(self) -> list[Option]:
        """The command's options in --help order."""
        shared = {**SHARED, **self.shared}
        own = [shared[o] if isinstance(o, str) else o for o in self.options]
        moved = {o for o in self.options if isinstance(o, str)}
        head, tail = ([shared[n] for n in names if n not in moved] for names in (HEAD, TAIL))
        return [option for option in (*head, *own, *tail) if option is not None]

    def train(self, values: dict[str, Any]) -> None:
        """What the command does with its parsed options."""
        from train.config import deep_merge, parse_set

        run = _function(self.runner)
        if self.check:
            _function(self.check)()
        explicit: dict[str, Any] = {}
        for option in self.layout():
            explicit.update(option.config(values[option.name]))
        overrides = deep_merge(parse_set(values["set_"]), explicit)
        settings = self.load(self.name, values["config"], overrides)
        self.report(run(settings, fresh=values["fresh"], dry_run=values["dry_run"], log=_say))


def _function(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def command(method: Method) -> Callable[..., None]:
    """The typer command of ``method``: a function whose signature lists the method's options."""

    def train(**values: Any) -> None:
        method.train(values)

    train.__signature__ = inspect.Signature([option.parameter() for option in method.layout()])  # type: ignore[attr-defined]
    train.__doc__ = method.help
    return train


def _load_atm(kind: str, config: Path | None, overrides: dict[str, Any]) -> Any:
    from train.atm_config import load_atm_settings

    return load_atm_settings(config, overrides)


def _report_atm(outcome: Any) -> None:
    if isinstance(outcome, list):
        for line in outcome:
            _say(line)
        return
    print(outcome["final_generator"])


def _data(help: str) -> Option:
    return Option("data", str | None, help)


def _stage(number: int, help: str) -> Option:
    """``--stageN-data``: that stage's ``data`` key (hybrid)."""
    return Option(
        f"stage{number}_data", str | None, help, key=f"stage{number}", convert=lambda data: {"data": data}
    )


_PREFERENCES = _data("Preference dataset folder (`synth export -f dpo`).")
_RL_DATA = _data("Prompt dataset (`synth export -f rl`): prompt + answers.")

METHODS = (
    Method(
        "sft",
        "Supervised fine-tuning; loss only on assistant/completion tokens (never on prompts or passages).",
        "train.sft:run_sft",
        (_data("Dataset folder from `synth export` (messages or prompt/completion)."),),
    ),
    Method(
        "dpo",
        "Direct preference optimisation; with LoRA the reference is the base with the adapter off.",
        "train.dpo:run_dpo",
        (_PREFERENCES, "output_dir", Option("beta", float | None, "DPO beta (strength of the KL anchor).")),
    ),
    Method(
        "hybrid",
        "Two stages in one command: SFT, merge, then DPO (eto) or SFT (smart) with a new LoRA on the merge.",
        "train.hybrid:run_hybrid",
        (
            Option("recipe", str | None, "eto: SFT then DPO; smart: SFT on short, then on long."),
            _stage(1, "Stage 1 dataset (SFT; SMART: sft-short)."),
            _stage(2, "Stage 2 dataset (eto: dpo; SMART: sft-long)."),
            "model",
        ),
    ),
    Method(
        "reward",
        "Reward model (one-output classification head) on preference pairs, for grpo/ppo rewards.",
        "train.reward_model:run_reward",
        (_PREFERENCES,),
    ),
    Method(
        "grpo",
        "GRPO with weighted rewards: exact match / F1 on gold answers, a judge role, a reward model.",
        "train.grpo:run_grpo",
        (
            _RL_DATA,
            Option(
                "reward",
                list[str],
                "KIND[:WEIGHT][=MODEL]: exact_match, f1, judge=MODEL_SPEC, model=REWARD_RUN; "
                "repeatable (grpo).",
                ("--reward",),
                [],
                key="rewards",
                convert=_reward_sources,
            ),
            Option("num_generations", int | None, "Completions per prompt (the group)."),
            Option("max_completion_length", int | None, "Tokens per completion."),
            Option("beta", float | None, "KL coefficient (0: no reference model)."),
        ),
    ),
    Method(
        "ppo",
        "Actor-critic PPO (TRL 1.12; runs in the PPO environment: `make venv-ppo`).",
        "train.ppo:run_ppo",
        (
            _RL_DATA,
            Option(
                "reward",
                str | None,
                "exact_match, f1 or model=REWARD_RUN (one reward; default exact_match).",
                convert=lambda spec: _reward_sources([spec])[0],
            ),
            Option("value_model", str | None, "Critic init (default: reward model, else base)."),
        ),
        check="train.ppo:require_ppo",
    ),
    Method(
        "mito",
        "ATM's MITO: CE on the clean context + beta * token KL between attacked and clean contexts.",
        "train.mito:run_mito",
        (
            _data("MITO dataset: prompt (clean), adv_prompt (attacked), answer."),
            Option("beta", float | None, "Weight of KL(attacked || clean) on answer tokens."),
        ),
    ),
    Method(
        "atm",
        "ATM end to end: synthesize with the attacker, rank by generator NLL, attacker DPO, generator MITO.",
        "train.atm_loop:run_atm_loop",
        (
            Option("attacker", str | None, "The attacker's starting weights (default: --model)."),
            Option(
                "attacker_spec",
                str | None,
                "A model spec serving the starting attacker (default local:ATTACKER).",
            ),
            _data("ATM seeds .jsonl (question, answers, passage/ctxs) to synthesize on."),
            Option("eval_data", str | None, "Held-out QA .jsonl (disjoint from --data) for EM under attack."),
            Option("iterations", int | None, "ATM iterations T (raising it extends a run)."),
            Option(
                "initial_sft",
                bool | None,
                "Stage 0: SFT the generator on the ATM sft export.",
                ("--initial-sft/--no-initial-sft",),
            ),
            Option("eval_limit", int | None, "Evaluate on the first N held-out rows."),
        ),
        shared={
            "model": Option("model", str | None, "The generator's starting weights (folder or name)."),
            "limit": Option("limit", int | None, "Synthesize on the first N seed rows only."),
            "merge": None,
        },
        load=_load_atm,
        report=_report_atm,
    ),
)

for _method in METHODS:
    train_app.command(_method.name)(command(_method))
