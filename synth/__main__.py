"""``python -m synth`` is the ``synth`` command."""

from synth.cli import main

main()
