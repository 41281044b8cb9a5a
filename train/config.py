"""Training configs: YAML files validated by pydantic, with command-line overrides.

Every key is declared (``extra="forbid"``) so a typo fails before a model is loaded, with the key's
location, the known keys and the closest match, instead of being silently ignored for an hour-long run.
The resolved config (file + ``--set`` overrides + explicit flags) is what a run saves and compares on
resume, so the same command twice means the same run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from train.errors import TrainError

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Tuning = Literal["lora", "qlora", "full"]
Kind = Literal["sft", "dpo", "hybrid", "reward", "grpo", "ppo", "mito"]


class ConfigError(TrainError):
    """A training config file or override is invalid; the message names the key and how to fix it."""


class LoraSettings(BaseModel):
    """LoRA adapter shape. ``target_modules: all-linear`` adapts every linear layer but the output head."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1, description="adapter rank")
    alpha: int = Field(default=32, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"


class CommonSettings(BaseModel):
    """Keys shared by every command: model, tuning method, hardware, schedule, logging, output."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        min_length=1,
        description="HF model folder, hub id (online only), built-in name (gemma-3-270m) or local:SPEC",
    )
    output_dir: str = Field(min_length=1, description="run folder (created; re-running resumes)")
    tuning: Tuning = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    precision: Precision = Field(
        default="auto",
        description="auto: bf16 on bf16 GPUs, fp16 on others; on CPU bf16 with AMX / avx512_bf16, else fp32",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_length: int = Field(default=1024, ge=8, description="tokens per example (longer ones are truncated)")
    packing: bool = Field(default=False, description="SFT: pack examples into max_length blocks (bfd)")
    padding_free: bool = Field(default=False, description="flatten batches (needs flash-attention on GPU)")
    gradient_checkpointing: bool = False
    head_on: Literal["loss", "all"] = Field(
        default="loss",
        description="loss: project the LM head only at positions that carry a loss; all: at every position "
        "(TRL's CPU default; the same loss, slower)",
    )
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup: float = Field(default=0.03, ge=0, description="< 1: ratio of total steps; >= 1: steps")
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 overrides epochs")
    batch_size: int = Field(default=4, ge=1, description="per device")
    grad_accum: int = Field(default=1, ge=1)
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int = Field(default=200, ge=1, description="checkpoint every N steps (resume point)")
    save_total_limit: int | None = Field(default=2, ge=1)
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    seed: int = 42
    limit: int | None = Field(default=None, ge=1, description="train on the first N rows only (smoke runs)")
    merge: bool = Field(default=False, description="also save the adapter merged into the base model")


class SFTSettings(CommonSettings):
    """``synth train sft``: ``messages`` or ``prompt``/``completion`` data."""

    data: str = Field(
        min_length=1, description="dataset folder from `synth export`, or a .jsonl/.parquet file"
    )
    loss_on: Literal["assistant", "all"] = Field(
        default="assistant",
        description="assistant: loss on assistant/completion tokens only; all: on every token",
    )
    group_by_length: bool = Field(
        default=False, description="batch rows of similar length together (less padding when batch_size > 1)"
    )


class DPOSettings(CommonSettings):
    """``synth train dpo``: conversational ``prompt``/``chosen``/``rejected`` data."""

    data: str = Field(min_length=1, description="dataset folder from `synth export -f dpo`")
    beta: float = Field(default=0.1, gt=0)
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust"] = "sigmoid"
    learning_rate: float = Field(default=5e-6, gt=0)


class RewardSettings(CommonSettings):
    """``synth train reward``: a scalar reward model (sequence-classification head) on preference pairs."""

    data: str = Field(min_length=1, description="preference dataset folder from `synth export -f dpo`")
    learning_rate: float = Field(default=1e-4, gt=0)
    center_rewards_coefficient: float | None = Field(
        default=None, ge=0, description="pull rewards towards 0 (Eisenstein et al. 2023); e.g. 0.01"
    )


RewardKind = Literal["exact_match", "f1", "judge", "model"]


class RewardSource(BaseModel):
    """One reward: a rule against the row's gold answers, a judge role, or a trained reward model."""

    model_config = ConfigDict(extra="forbid")

    kind: RewardKind
    weight: float = Field(default=1.0, description="weight in the sum of rewards")
    model: str | None = Field(
        default=None,
        description="judge: a synth model spec (openai:M@URL, local:...); model: a reward run folder",
    )
    answers_field: str = Field(default="answers", description="rules: the column with the gold answers")
    rubric: str = Field(default="", description="judge: what a good answer is (a row's `rubric` column wins)")
    max_concurrency: int = Field(default=8, ge=1, description="judge: calls in flight at once")
    timeout_s: float = Field(default=60.0, gt=0, description="judge: per call attempt")
    retries: int = Field(default=2, ge=0, description="judge: retries of a failed call")
    api_key_env: str | None = Field(default=None, description="judge: env var holding the API key")

    @model_validator(mode="after")
    def _model_matches_kind(self) -> RewardSource:
        if self.kind in ("judge", "model") and not self.model:
            what = {"judge": "a synth model spec, e.g. openai:gpt-4o-mini"}.get(
                self.kind, "a `synth train reward` run folder"
            )
            raise ValueError(f"a {self.kind} reward needs model: {what}")
        if self.kind in ("exact_match", "f1") and self.model:
            raise ValueError(
                f"a {self.kind} reward compares with gold answers and takes no model; remove model"
            )
        return self


class GRPOSettings(CommonSettings):
    """``synth train grpo``: group-relative policy optimisation on prompts (``rl`` exports)."""

    data: str = Field(min_length=1, description="prompt dataset (`synth export -f rl`): prompt (+ answers)")
    rewards: list[RewardSource] = Field(
        default_factory=lambda: [RewardSource(kind="exact_match")], min_length=1
    )
    num_generations: int = Field(default=4, ge=2, description="completions sampled per prompt (the group)")
    max_completion_length: int = Field(default=64, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.0, ge=0, description="KL coefficient; 0 loads no reference model")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    learning_rate: float = Field(default=1e-6, gt=0)

    @model_validator(mode="after")
    def _batch_holds_whole_groups(self) -> GRPOSettings:
        if (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of "
                f"num_generations ({self.num_generations}): each step trains whole groups of completions"
            )
        return self


class PPOSettings(CommonSettings):
    """``synth train ppo``: actor-critic PPO (TRL 1.12, its own environment: `make venv-ppo`)."""

    data: str = Field(min_length=1, description="prompt dataset (`synth export -f rl`): prompt (+ answers)")
    reward: RewardSource = Field(default_factory=lambda: RewardSource(kind="exact_match"))
    value_model: str | None = Field(
        default=None, description="critic initialisation (default: the reward model, else the policy base)"
    )
    response_length: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.7, gt=0)
    num_ppo_epochs: int = Field(default=4, ge=1)
    num_mini_batches: int = Field(default=1, ge=1)
    kl_coef: float = Field(default=0.05, ge=0)
    cliprange: float = Field(default=0.2, gt=0)
    vf_coef: float = Field(default=0.1, gt=0)
    cliprange_value: float = Field(default=0.2, gt=0)
    gamma: float = Field(default=1.0, ge=0, le=1)
    lam: float = Field(default=0.95, ge=0, le=1)
    missing_eos_penalty: float | None = Field(default=None, ge=0)
    learning_rate: float = Field(default=3e-6, gt=0)

    @model_validator(mode="after")
    def _no_judge(self) -> PPOSettings:
        if self.reward.kind == "judge":
            raise ValueError("reward.kind: judge is a GRPO reward; PPO takes exact_match, f1 or model")
        return self


class MITOSettings(CommonSettings):
    """``synth train mito``: ATM's MITO on {prompt, adv_prompt, answer} rows (clean / attacked context)."""

    data: str = Field(min_length=1, description="MITO dataset: prompt, adv_prompt, answer")
    beta: float = Field(default=0.2, ge=0, description="weight of the token KL(attacked || clean)")
    stop_gradient_clean: bool = Field(
        default=False,
        description="true: the KL term treats the clean distribution as a fixed target (only CE trains it)",
    )


#: Keys a stage of ``hybrid`` may not set: the hybrid command chooses them.
_STAGE_FIXED = ("model", "output_dir", "merge")


class HybridSettings(CommonSettings):
    """``synth train hybrid``: stage 1 SFT, merge, then stage 2 on the merged model with a new LoRA.

    ``recipe: eto`` -> stage 2 is DPO (its adapter-off reference is the SFT model). ``recipe: smart`` ->
    stage 1 on SMART short trajectories, stage 2 SFT on long ones. ``stage1``/``stage2`` hold each stage's
    ``data`` and any per-stage override of the shared keys (e.g. ``learning_rate``, ``beta``).
    """

    recipe: Literal["eto", "smart"] = "eto"
    stage1: dict[str, Any] = Field(default_factory=dict)
    stage2: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _stages_are_valid(self) -> HybridSettings:
        for name in ("stage1", "stage2"):
            stage = getattr(self, name)
            fixed = [key for key in _STAGE_FIXED if key in stage]
            if fixed:
                raise ValueError(
                    f"{name}.{fixed[0]} is set by the hybrid command (stage folders live under output_dir, "
                    f"stage 2 starts from stage 1's merged model); remove it from {name}"
                )
            if not stage.get("data"):
                raise ValueError(f"{name}.data is missing: the dataset folder this stage trains on")
        return self

    def stage_settings(self, stage: Literal[1, 2], model: str, output_dir: str) -> SFTSettings | DPOSettings:
        """The full settings of one stage: shared keys, then the stage's overrides."""
        shared = self.model_dump(exclude={"recipe", "stage1", "stage2"})
        overrides = self.stage1 if stage == 1 else self.stage2
        cls: type[SFTSettings | DPOSettings] = (
            DPOSettings if (stage == 2 and self.recipe == "eto") else SFTSettings
        )
        if cls is DPOSettings and "learning_rate" not in overrides:
            shared.pop("learning_rate")  # DPO's own default (5e-6), not the SFT one
        merged = deep_merge(shared, overrides)
        merged.update(model=model, output_dir=output_dir, merge=stage == 1 or self.merge)
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls, prefix=f"stage{stage}.")) from None


SETTINGS: dict[str, type[CommonSettings]] = {
    "sft": SFTSettings,
    "dpo": DPOSettings,
    "hybrid": HybridSettings,
    "reward": RewardSettings,
    "grpo": GRPOSettings,
    "ppo": PPOSettings,
    "mito": MITOSettings,
}
#: Keys that may change between a run and its resumption (they extend or relabel a run, not alter it).
#: ``iterations`` (``synth train atm``) extends a loop: iteration t depends only on earlier ones.
RESUMABLE_KEYS = frozenset(
    {"epochs", "max_steps", "save_steps", "save_total_limit", "logging_steps", "report_to", "merge"}
    | {"iterations", "head_on"}
)


# -- loading ---------------------------------------------------------------------------------------------
def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs (dotted keys for nested ones: ``lora.r=8``) -> a nested dict; values are YAML."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r} must look like KEY=VALUE (e.g. --set lora.r=8)")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {part} is both a value and a section")
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file as a dict; an empty file is an empty config."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys (model: ..., data: ...), not {type(data).__name__}"
        )
    return data


def load_settings(
    kind: Kind,
    config: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CommonSettings:
    """Settings for ``kind``: a YAML file (optional), then ``overrides`` (``--set`` and flags) on top."""
    cls = SETTINGS[kind]
    raw = read_yaml(config) if config is not None else {}
    if raw.get("kind") not in (None, kind):  # a run folder's config.yaml carries its kind
        raise ConfigError(f"{config} is a '{raw['kind']}' config; use it with `synth train {raw['kind']}`")
    raw.pop("kind", None)
    merged = deep_merge(raw, overrides or {})
    try:
        return cls.model_validate(merged)
    except ValidationError as exc:
        where = f"{config}" if config is not None else "the command line"
        raise ConfigError(
            f"invalid {kind} config ({where}):\n{format_validation_error(exc, cls)}\n"
            "Fix the key in the YAML file or override it with --set KEY=VALUE."
        ) from None


# -- error messages --------------------------------------------------------------------------------------
def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The known keys of the section that ``loc`` (minus its last part) points into."""
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def format_validation_error(exc: ValidationError, cls: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: ``key: what is wrong (got X)``, with known keys and a close match for typos."""
    lines: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "(top level)"
        if error["type"] == "extra_forbidden":
            known = _fields_at(cls, loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"  {key}: unknown key{hint} Known keys here: {', '.join(known)}")
        elif error["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            got = error.get("input")
            msg = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"  {key}: {msg} (got {got!r})")
    return "\n".join(lines)


def dump_settings(kind: Kind, settings: CommonSettings) -> dict[str, Any]:
    """The resolved config as saved in a run folder (JSON-native, with its kind)."""
    return {"kind": kind, **settings.model_dump(mode="json")}
