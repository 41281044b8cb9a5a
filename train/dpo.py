"""``synth train dpo``: direct preference optimisation on conversational prompt/chosen/rejected rows.

With LoRA the reference policy is the same network with the adapter switched off, so no second model is
loaded and nothing is downloaded (TRL otherwise re-loads the reference by the model's name, which fails
offline for an in-memory model). With full fine-tuning TRL loads a frozen copy from the same local folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from train.common import lora_config, quantization_config, trainer_arguments
from train.config import DPOSettings
from train.runfolder import RunResult
from train.runner import Job, Plan, execute


def build_dpo_trainer(job: Job) -> Any:
    """The TRL ``DPOTrainer`` for a resolved job (model by path, LoRA via ``peft_config``)."""
    from trl import DPOConfig, DPOTrainer

    settings = job.settings
    assert isinstance(settings, DPOSettings)
    args = DPOConfig(
        **trainer_arguments(settings, job.hardware, job.precision, job.folder.checkpoints),
        beta=settings.beta,
        loss_type=[settings.loss_type],
        dataset_num_proc=None,
    )
    return DPOTrainer(
        model=job.base,
        ref_model=None,
        args=args,
        train_dataset=job.dataset,
        processing_class=job.tokenizer,
        peft_config=lora_config(settings),
        quantization_config=quantization_config(settings, job.precision),
        callbacks=list(job.callbacks),
    )


def run_dpo(
    settings: DPOSettings,
    *,
    fresh: bool = False,
    dry_run: bool = False,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = print,
) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a DPO run; re-running the same settings resumes it."""
    return execute(
        "dpo", settings, build_dpo_trainer, fresh=fresh, dry_run=dry_run, callbacks=callbacks, log=log
    )
