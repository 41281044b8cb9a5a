"""``synth train reward``: a scalar reward model trained with TRL's ``RewardTrainer`` on preference pairs.

The model is the base with a one-output sequence-classification head (``AutoModelForSequenceClassification``,
``num_labels=1``); the loss is the Bradley-Terry ``-log sigmoid(r(chosen) - r(rejected))``. With LoRA the
adapter is a ``SEQ_CLS`` adapter: the new score head is trained in full and saved with it, so
``adapter/`` alone (on its base) is the whole reward model. Data: ``dpo`` exports, conversational (rendered
with the chat template, exactly as GRPO/PPO render prompt + completion when they score) or plain strings.

The trained model is used by ``synth train grpo`` / ``ppo`` (``rewards: [{kind: model, model: RUN}]``) via
:func:`train.reward_sources.load_reward_model`.
"""

from __future__ import annotations

from typing import Any, Unpack

from train.config import RewardSettings
from train.job import Job, Plan, RunOptions, execute
from train.runfolder import RunResult


def build_reward_trainer(job: Job) -> Any:
    """The TRL ``RewardTrainer`` for a resolved job (model by path: TRL adds the one-label head)."""
    from trl import RewardConfig, RewardTrainer

    settings = job.settings
    assert isinstance(settings, RewardSettings)
    arguments = job.config_arguments()
    arguments.pop("padding_free")  # not a RewardConfig field: reward batches are always padded
    args = RewardConfig(
        **arguments,
        center_rewards_coefficient=settings.center_rewards_coefficient,
        dataset_num_proc=None,
    )
    return RewardTrainer(args=args, train_dataset=job.dataset, **job.trainer_inputs(task_type="SEQ_CLS"))


def run_reward(settings: RewardSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a reward model; re-running the same settings resumes it."""
    return execute("reward", settings, build_reward_trainer, **options)
