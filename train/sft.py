"""``synth train sft``: supervised fine-tuning (LoRA, QLoRA, full) on ``messages`` or prompt/completion data.

Loss is masked to what the model should produce: with ``loss_on: assistant`` (the default), conversational
``messages`` use TRL's ``assistant_only_loss`` — only tokens inside the chat template's ``{% generation %}``
markers (assistant content and its end-of-turn token) are trained, so user turns, headers and retrieved
passages (SMART long trajectories put them in ``tool``/``retrieval`` turns) get label -100. Prompt/completion
rows (SMART short trajectories) use completion-only loss, plus the assistant mask when the template has
generation markers, so the trailing section separator is not trained either.
"""

from __future__ import annotations

from typing import Any, Unpack

from train.config import SFTSettings
from train.errors import TrainError
from train.job import Job, Plan, RunOptions, execute
from train.runfolder import RunResult


def _has_generation_markers(tokenizer: Any) -> bool:
    from trl.chat_template_utils import has_generation_markers

    return bool(tokenizer.chat_template) and has_generation_markers(tokenizer.chat_template)


def build_sft_trainer(job: Job) -> Any:
    """The TRL ``SFTTrainer`` for a resolved job. The model is passed by path: TRL loads it with the run's
    dtype (and 4-bit config for QLoRA) and wraps it with the LoRA config."""
    from trl import SFTConfig, SFTTrainer

    settings = job.settings
    assert isinstance(settings, SFTSettings)
    masked = settings.loss_on == "assistant"
    prompt_completion = job.data_format == "prompt_completion"
    assistant_only = (
        masked and job.conversational and (not prompt_completion or _has_generation_markers(job.tokenizer))
    )
    args = SFTConfig(
        **job.config_arguments(),
        packing=settings.packing,
        assistant_only_loss=assistant_only,
        completion_only_loss=masked if prompt_completion else None,
        dataset_num_proc=None,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
    )
    try:
        return SFTTrainer(args=args, train_dataset=job.dataset, **job.trainer_inputs())
    except (ValueError, RuntimeError) as exc:
        if assistant_only and "generation" in str(exc).lower():
            raise TrainError(
                f"assistant-only loss needs {{% generation %}} markers in the chat template of {job.base}, "
                "and "
                f"TRL has no training version of it ({exc}). Set loss_on: all, or delete the tokenizer's "
                "chat_template so the project's plain template (which has them) is used"
            ) from exc
        raise


def run_sft(settings: SFTSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) an SFT run; re-running the same settings resumes it."""
    return execute("sft", settings, build_sft_trainer, **options)
