"""Where the repository and its bundled data are, resolved from this file so tests run from any cwd.

The seed data lives inside the repository (``examples/data``, origin and licenses in its SOURCES.md):
a fresh clone has everything its tests read.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"
