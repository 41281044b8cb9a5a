"""The config of ``synth train atm``: ATM's loop over synthesis, attacker DPO and generator MITO.

The shared keys (LoRA, precision, schedule...) are every stage's defaults, as in ``hybrid``; ``sft``,
``dpo`` and ``mito`` override them per stage. ``model`` is the generator's starting weights, ``attacker``
the attacker's (default: the same model). Synthesis runs the ATM graph with ``atm`` as its options (``-O``
of ``synth run atm``) and ``run`` as the engine settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from train.config import (
    CommonSettings,
    ConfigError,
    DPOSettings,
    MITOSettings,
    SFTSettings,
    deep_merge,
    format_validation_error,
    read_yaml,
)

#: The paper's attacker DPO strength.
ATM_DPO_BETA = 0.2
Stage = Literal["sft", "dpo", "mito"]
_STAGE_CLASSES: dict[Stage, type[SFTSettings | DPOSettings | MITOSettings]] = {
    "sft": SFTSettings,
    "dpo": DPOSettings,
    "mito": MITOSettings,
}
#: Keys the loop sets for each stage (its model, data and folder; stages are always merged).
_STAGE_FIXED = ("model", "data", "output_dir", "merge")


class RunOptions(BaseModel):
    """How the synthesis runs call the models (the `synth run` flags of the same names)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=8, ge=1, description="rows in flight")
    max_calls: int = Field(default=16, ge=1, description="model calls in flight per model")
    timeout: float = Field(default=120.0, gt=0, description="seconds per call attempt (local: >= 1 h)")
    retries: int = Field(default=3, ge=0)
    cache: bool = Field(default=True, description="the run folder's call cache")
    api_key_env: str | None = Field(default=None, description="env var with the key of an openai: attacker")


class EvalOptions(BaseModel):
    """EM under attack on the held-out set (``synth eval qa --attack``)."""

    model_config = ConfigDict(extra="forbid")

    style: Literal["atm", "plain"] = Field(
        default="atm", description="atm: the generator role's prompt (what sft/mito train on); plain"
    )
    max_new_tokens: int = Field(default=24, ge=1)
    batch_size: int = Field(default=8, ge=1)


class AtmSettings(CommonSettings):
    """``synth train atm``; ``model`` is the generator to harden."""

    data: str = Field(min_length=1, description="ATM seed rows (.jsonl): question, answers, passage/ctxs")
    eval_data: str = Field(min_length=1, description="held-out QA rows (.jsonl), disjoint from data")
    eval_limit: int | None = Field(default=None, ge=1, description="evaluate the first N rows only")
    iterations: int = Field(default=1, ge=1, description="ATM iterations T (raising it extends a run)")
    attacker: str | None = Field(default=None, description="the attacker's starting weights (default: model)")
    attacker_spec: str | None = Field(
        default=None,
        description="a synth model spec serving the starting attacker in iteration 1 and for the eval "
        "attack (default local:ATTACKER); later iterations use the DPO-trained attacker in-process",
    )
    train_attacker: bool = Field(default=True, description="false: keep the starting attacker (no DPO)")
    initial_sft: bool = Field(
        default=False, description="stage 0: SFT the generator on the ATM sft export (30% closed-book)"
    )
    atm: dict[str, Any] = Field(default_factory=dict, description="ATM graph options (synth run atm -O)")
    run: RunOptions = Field(default_factory=RunOptions)
    eval: EvalOptions = Field(default_factory=EvalOptions)
    sft: dict[str, Any] = Field(default_factory=dict, description="stage 0 overrides of the shared keys")
    dpo: dict[str, Any] = Field(default_factory=dict, description="attacker DPO overrides (beta: 0.2)")
    mito: dict[str, Any] = Field(default_factory=dict, description="generator MITO overrides (beta: 0.2)")

    @model_validator(mode="after")
    def _stages_leave_fixed_keys(self) -> AtmSettings:
        for name in ("sft", "dpo", "mito"):
            fixed = [key for key in _STAGE_FIXED if key in getattr(self, name)]
            if fixed:
                raise ValueError(
                    f"{name}.{fixed[0]} is set by the atm loop (each stage trains the current checkpoint on "
                    f"its iteration's export, merged for the next one); remove it from {name}"
                )
        return self

    @property
    def attacker_model(self) -> str:
        return self.attacker or self.model

    def stage_settings(self, stage: Stage, model: str, data: str, output_dir: Path) -> Any:
        """One stage's full settings: the shared keys, the stage's overrides, then its model/data/folder."""
        shared = self.model_dump(include=set(CommonSettings.model_fields) - {"limit"})
        overrides = getattr(self, stage)
        if stage == "dpo":
            if "learning_rate" not in overrides:
                shared.pop("learning_rate")  # DPO's own default, not the SFT/MITO one
            shared["beta"] = ATM_DPO_BETA
        merged = deep_merge(shared, overrides)
        merged.update(model=model, data=data, output_dir=str(output_dir), merge=True)
        cls = _STAGE_CLASSES[stage]
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, cls, prefix=f"{stage}.")) from None


def load_atm_settings(config: Path | None, overrides: dict[str, Any]) -> AtmSettings:
    """A YAML file (optional), then ``--set`` pairs and flags on top; errors name the key."""
    raw = read_yaml(config) if config is not None else {}
    if raw.get("kind") not in (None, "atm"):
        raise ConfigError(f"{config} is a '{raw['kind']}' config; use it with `synth train {raw['kind']}`")
    raw.pop("kind", None)
    try:
        return AtmSettings.model_validate(deep_merge(raw, overrides))
    except ValidationError as exc:
        where = f"{config}" if config is not None else "the command line"
        raise ConfigError(
            f"invalid atm config ({where}):\n{format_validation_error(exc, AtmSettings)}\n"
            "Fix the key in the YAML file or override it with --set KEY=VALUE."
        ) from None
