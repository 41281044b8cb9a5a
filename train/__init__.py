"""Training on synth exports with TRL + PEFT, and QA evaluation.

Modules: ``config`` (YAML settings, validated), ``sft`` / ``dpo`` (one run each), ``hybrid`` (SFT -> DPO,
SMART two-stage), ``runner`` + ``runfolder`` (plan, resume, outputs, merge), ``data`` (export folders,
fingerprints), ``common`` (hardware, precision, model, LoRA), ``qa`` + ``eval`` (exact match / F1).
Commands: ``synth train sft|dpo|hybrid`` and ``synth eval qa``; see docs/training.md. Heavy libraries
are imported lazily, so importing this package is cheap.
"""
