"""The dataset card (``README.md``) written next to every export.

The Hugging Face hub reads the YAML front matter (``configs``/``data_files``, ``license``,
``task_categories``, ``size_categories``, ``tags``, ``language``) to show and load the dataset; the body says
how the data was made (graph, roles and template hashes, models and sampling, seed source, counts by status
and token usage), shows a sample record and how to train on it. Only values that the run folder records are
used, and the run's ``config.yaml`` never holds secrets, so neither does the card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml


def data_file(export_id: str) -> str:
    """The one parquet file an export writes, named exactly in the card with a per-export id.

    datasets 5.2 keys its cache of a local folder by the card's data_files patterns, not by the files'
    content: two exports with the same pattern (``out/sft`` then ``out/sft-long``, or a re-export into the
    same folder) would load each other's cached rows. A unique file name makes every export its own.
    """
    return f"data/train-00000-of-00001-{export_id}.parquet"


TASKS = {"sft": ["text-generation"], "dpo": ["text-generation"], "rl": ["question-answering"]}


def size_category(rows: int) -> str:
    """The hub's size bucket for ``rows``."""
    for limit, name in [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ]:
        if rows < limit:
            return name
    return "1M<n<10M"


def render_card(
    *,
    format_name: str,
    data_path: str,
    rows: int,
    config: Mapping[str, Any],
    graph_description: str,
    role_templates: Mapping[str, str],
    counts: Mapping[str, int],
    usage: Mapping[str, int],
    sample: Mapping[str, Any] | None,
    license: str = "other",
    language: str = "en",
) -> str:
    """The README.md text for one exported format."""
    front = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}],
        "license": license,
        "language": [language],
        "task_categories": TASKS.get(format_name.split("-")[0], ["text-generation"]),
        "size_categories": [size_category(rows)],
        "tags": ["synthetic", "synth", f"synth-{config.get('graph', 'graph')}", format_name],
    }
    models = config.get("models", {})
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {config.get('graph', 'synth')} · {format_name}",
        "",
        f"Synthesized with synth (pip install agentsynth) by the `{config.get('graph')}` graph "
        f"(version {config.get('graph_version')}): {graph_description}",
        "",
        "## How it was made",
        "",
        f"- Seed data: `{config.get('input')}` (its license governs this derived data; check it before "
        "publishing)",
        f"- Models: {', '.join(f'`{role}` = `{spec}`' for role, spec in models.items())}",
        f"- Graph options: `{json.dumps(config.get('options', {}), sort_keys=True)}`",
        f"- Configuration fingerprint: `{config.get('fingerprint')}`",
        "- Role templates (name: hash): "
        + ", ".join(f"`{name}`: `{digest}`" for name, digest in sorted(role_templates.items())),
        f"- Trajectories by status: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}",
        f"- Tokens: {usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion "
        f"in {usage.get('calls', 0)} model calls",
        f"- Rows in this export: {rows}",
        "",
        "## Load and train",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'dataset = load_dataset("PATH_OR_REPO", split="train")',
        "```",
        "",
        _training_hint(format_name),
        "",
    ]
    if sample is not None:
        text = json.dumps(sample, ensure_ascii=False, indent=2)
        lines += ["## A sample record", "", "```json", text[:4000], "```", ""]
    return "\n".join(lines)


def _training_hint(format_name: str) -> str:
    if format_name.startswith("dpo") or format_name == "atm-dpo":
        return "Train with TRL's `DPOTrainer` (conversational `prompt`/`chosen`/`rejected` columns)."
    if format_name.startswith("rl"):
        return "Use with TRL's `GRPOTrainer`: `prompt` plus the reward fields (e.g. gold `answers`)."
    return (
        "Train with TRL's `SFTTrainer` as is (`messages`, or `prompt`/`completion`); use "
        "`assistant_only_loss=True` so only assistant turns are trained."
    )
