"""synth: synthesize training data for LLM agents with multi-agent role graphs, and train on it."""

__version__ = "0.1.0"
