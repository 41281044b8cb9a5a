"""``synth train grpo``: group-relative policy optimisation (TRL ``GRPOTrainer``) on prompt datasets.

For every prompt the policy samples ``num_generations`` completions; each completion is scored by every
configured reward source (:mod:`train.reward_sources`: exact match / F1 against gold answers, a judge role on
any synth model spec, a ``synth train reward`` model), the scores are summed with the configured weights, and
the advantage of a completion is its reward relative to its group. Data: an ``rl`` export (``prompt`` +
``answers``) or any dataset with a ``prompt`` column; every other column reaches the reward functions
(``answers``, a per-row ``rubric`` for the judge).

``batch_size`` counts completions: ``batch_size x grad_accum`` must hold whole groups (a multiple of
``num_generations``). With ``beta: 0`` (TRL's default) no reference model is loaded; with ``beta > 0``
and LoRA the reference is the adapter switched off.
"""

from __future__ import annotations

import asyncio
from typing import Any, Unpack

from train.config import GRPOSettings
from train.data import load_rows
from train.errors import TrainError
from train.job import Job, Plan, RunOptions, execute
from train.reward_sources import JudgeReward, build_reward_funcs
from train.runfolder import RunResult


def check_reward_columns(settings: GRPOSettings, columns: list[str]) -> None:
    """Rule rewards need gold answers: say so before any model loads."""
    for source in settings.rewards:
        if source.kind in ("exact_match", "f1") and source.answers_field not in columns:
            raise TrainError(
                f"reward {source.kind} needs gold answers in a '{source.answers_field}' column of "
                f"{settings.data} (columns: {columns}); export with `synth export RUN -f rl`, set "
                "answers_field: to the column that holds them, or use a judge/model reward"
            )


def build_grpo_trainer(job: Job) -> Any:
    """The TRL ``GRPOTrainer`` for a resolved job: policy by path (LoRA via ``peft_config``), one reward
    function per configured source, weights in ``reward_weights``."""
    from trl import GRPOConfig, GRPOTrainer

    settings = job.settings
    assert isinstance(settings, GRPOSettings)
    check_reward_columns(settings, job.dataset.column_names)
    funcs, reward_tokenizers, weights = build_reward_funcs(settings.rewards)
    args = GRPOConfig(
        **job.config_arguments(only_fields_of=GRPOConfig),
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        loss_type=settings.loss_type,
        reward_weights=weights,
    )
    trainer = GRPOTrainer(
        reward_funcs=funcs,
        args=args,
        train_dataset=job.dataset,
        reward_processing_classes=reward_tokenizers,
        **job.trainer_inputs(),
    )
    judges = [func for func in funcs if isinstance(func, JudgeReward)]
    if judges:
        trainer.add_callback(_close_judges_at_the_end(trainer, judges))
    return trainer


def _close_judges_at_the_end(trainer: Any, judges: list[JudgeReward]) -> Any:
    """A callback closing the judges' clients when training ends, in TRL's reward loop: that loop made
    their calls and holds their connection pools, and it runs until the process exits."""
    from transformers import TrainerCallback

    class CloseJudges(TrainerCallback):  # type: ignore[misc]
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            loop = getattr(trainer, "async_loop", None)
            if loop is None or not loop.is_running():
                return
            for judge in judges:
                asyncio.run_coroutine_threadsafe(judge.aclose(), loop).result(timeout=60)

    return CloseJudges()


def run_grpo(settings: GRPOSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a GRPO run; re-running the same settings resumes it."""
    check_reward_columns(settings, load_rows(settings.data, 1).column_names)  # before any model loads
    return execute("grpo", settings, build_grpo_trainer, **options)
