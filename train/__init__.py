"""Training on synth exports with TRL + PEFT, and QA evaluation.

Modules: ``config`` (YAML settings, validated), ``sft`` / ``dpo`` (one run each), ``hybrid`` (SFT -> DPO,
SMART two-stage), ``runner`` + ``runfolder`` (plan, resume, outputs, merge), ``data`` (export folders,
fingerprints), ``common`` (hardware, precision, model, LoRA), ``qa`` + ``eval`` (exact match / F1),
``reward`` (reward models), ``grpo`` + ``rewards`` (GRPO and its reward sources), ``ppo`` (TRL 1.12, its
own environment), ``mito`` (ATM's MITO loss on SFTTrainer).
Commands: ``synth train sft|dpo|hybrid|reward|grpo|ppo|mito`` and ``synth eval qa``; see docs/training.md.
Heavy libraries are imported lazily, so importing this package is cheap.
"""
