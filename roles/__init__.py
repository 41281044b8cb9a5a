"""Built-in role agents (instructions + prompt templates + output schemas) for synth's graphs."""
