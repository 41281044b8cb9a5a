"""``synth train reward``: a scalar reward model trained with TRL's ``RewardTrainer`` on preference pairs.

The model is the base with a one-output sequence-classification head (``AutoModelForSequenceClassification``,
``num_labels=1``); the loss is the Bradley-Terry ``-log sigmoid(r(chosen) - r(rejected))``. With LoRA the
adapter is a ``SEQ_CLS`` adapter: the new score head is trained in full and saved with it, so
``adapter/`` alone (on its base) is the whole reward model. Data: ``dpo`` exports, conversational (rendered
with the chat template, exactly as GRPO/PPO render prompt + completion when they score) or plain strings.

The trained model is used by ``synth train grpo`` / ``ppo`` (``rewards: [{kind: model, model: RUN}]``) via
:func:`train.rewards.load_reward_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from train.common import lora_config, quantization_config, trainer_arguments
from train.config import RewardSettings
from train.runfolder import RunResult
from train.runner import Job, Plan, execute


def build_reward_trainer(job: Job) -> Any:
    """The TRL ``RewardTrainer`` for a resolved job (model by path: TRL adds the one-label head)."""
    from trl import RewardConfig, RewardTrainer

    settings = job.settings
    assert isinstance(settings, RewardSettings)
    arguments = trainer_arguments(settings, job.hardware, job.precision, job.folder.checkpoints)
    arguments.pop("padding_free")  # not a RewardConfig field: reward batches are always padded
    args = RewardConfig(
        **arguments,
        center_rewards_coefficient=settings.center_rewards_coefficient,
        dataset_num_proc=None,
    )
    return RewardTrainer(
        model=job.base,
        args=args,
        train_dataset=job.dataset,
        processing_class=job.tokenizer,
        peft_config=lora_config(settings, task_type="SEQ_CLS"),
        quantization_config=quantization_config(settings, job.precision),
        callbacks=list(job.callbacks),
    )


def run_reward(
    settings: RewardSettings,
    *,
    fresh: bool = False,
    dry_run: bool = False,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = print,
) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a reward model; re-running the same settings resumes it."""
    return execute(
        "reward", settings, build_reward_trainer, fresh=fresh, dry_run=dry_run, callbacks=callbacks, log=log
    )
