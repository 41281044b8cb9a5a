"""Built-in role graphs. Each module defines one ``GRAPH`` (a :class:`synth.graph.SynthGraph`)."""
