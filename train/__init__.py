"""Training on synth exports (LoRA SFT, DPO, hybrids, RL) with TRL + PEFT.

Not implemented yet: the package name is reserved by the project layout; see the README's status section.
"""
