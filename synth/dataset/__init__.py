"""The dataset side: run records to Hugging Face datasets (SFT/DPO/RL formats, corrections and
preference pairs from failures), splits, dataset cards, and pushing to the Hub."""
