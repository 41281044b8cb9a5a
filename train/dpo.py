"""``synth train dpo``: direct preference optimisation on conversational prompt/chosen/rejected rows.

With LoRA the reference policy is the same network with the adapter switched off, so no second model is
loaded and nothing is downloaded (TRL otherwise re-loads the reference by the model's name, which fails
offline for an in-memory model). With full fine-tuning TRL loads a frozen copy from the same local folder.
"""

from __future__ import annotations

from typing import Any, Unpack

from train.config import DPOSettings
from train.job import Job, Plan, RunOptions, execute
from train.runfolder import RunResult


def build_dpo_trainer(job: Job) -> Any:
    """The TRL ``DPOTrainer`` for a resolved job (model by path, LoRA via ``peft_config``)."""
    from trl import DPOConfig, DPOTrainer

    settings = job.settings
    assert isinstance(settings, DPOSettings)
    args = DPOConfig(
        **job.config_arguments(),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        dataset_num_proc=None,
    )
    return DPOTrainer(ref_model=None, args=args, train_dataset=job.dataset, **job.trainer_inputs())


def run_dpo(settings: DPOSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a DPO run; re-running the same settings resumes it."""
    return execute("dpo", settings, build_dpo_trainer, **options)
