"""The dataset card (``README.md``) written next to every export.

The Hugging Face hub reads the YAML front matter (``configs``/``data_files``, ``license``,
``task_categories``, ``size_categories``, ``tags``, ``language``) to show and load the dataset; the body says
how the data was made (graph, roles with template hashes, models and sampling, seed data and its license,
counts by status and by filter reason, token usage), shows a sample record and how to load and train on it.
Only values that the run folder records are used, the run's ``config.yaml`` never holds secrets, and the
finished text is passed through :func:`synth.engine.logs.redact` all the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synth.engine.logs import redact

TASKS = {
    "sft": ["text-generation"],
    "dpo": ["text-generation"],
    "corrections": ["text-generation"],
    "rl": ["question-answering"],
}
#: Marks a README.md as a card that ``synth export`` wrote (an HTML comment: invisible when rendered).
EXPORT_MARK = "<!-- generator: synth export -->"
#: Languages covering at least this share of the sampled rows are listed in the card.
LANGUAGE_SHARE = 0.2


def data_file(export_id: str, split: str = "train") -> str:
    """The parquet file of one split, named exactly in the card with a per-export id.

    datasets 5.2 keys its cache of a local folder by the card's data_files patterns, not by the files'
    content: two exports with the same pattern (``out/sft`` then ``out/sft-long``, or a re-export into the
    same folder) would load each other's cached rows. A unique file name makes every export its own.
    """
    return f"data/{split}-00000-of-00001-{export_id}.parquet"


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


@dataclass
class CardData:
    """Everything a card says, gathered by :func:`synth.dataset.export.export_run`."""

    format_name: str
    format_description: str
    files: Mapping[str, tuple[str, int]]  # split -> (data file, rows)
    config: Mapping[str, Any]
    graph_description: str
    role_templates: Mapping[str, str]
    role_sampling: Mapping[str, Mapping[str, Any]]
    counts: Mapping[str, int]
    usage: Mapping[str, int]
    sample: Mapping[str, Any] | None
    texts: Sequence[str] = ()
    license: str = "other"
    seed_license: str = ""
    languages: Sequence[str] = ()
    split_seed: int | None = None
    filter_reasons: Mapping[str, int] = field(default_factory=dict)
    filters_applied: Sequence[Mapping[str, Any]] = ()
    #: The run lock's holder when the export read a run that was still writing (a partial snapshot).
    live_run: str | None = None

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.files.values())


def graph_name(config: Mapping[str, Any]) -> str:
    """The graph's own name for titles and tags, never a file path: ``graph_name`` of config.yaml, else
    what ``graph`` names (``path/notes.yaml`` -> ``notes``, ``file.py:NAME`` -> ``NAME``)."""
    name = str(config.get("graph_name") or "")
    if not name:
        ref = str(config.get("graph") or "graph")
        name = ref.rpartition(":")[2] if ":" in ref else Path(ref).stem if "/" in ref or "." in ref else ref
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "graph"


def front_matter(data: CardData) -> dict[str, Any]:
    graph = graph_name(data.config)
    files = [{"split": split, "path": path} for split, (path, _) in data.files.items()]
    return {
        "pretty_name": f"{graph} {data.format_name} (synth)",
        "configs": [{"config_name": "default", "data_files": files}],
        "license": data.license,
        "language": list(data.languages) or detect_languages(data.texts),
        "task_categories": TASKS.get(data.format_name.split("-")[0], ["text-generation"]),
        "size_categories": [size_category(data.rows)],
        "tags": ["synthetic", "synth", f"synth-{graph}", data.format_name],
    }


def detect_languages(texts: Sequence[str]) -> list[str]:
    """ISO 639-1 codes covering >= 20 % of the sampled rows; ``und`` (undetermined) when none does."""
    from synth.filters.language import detect

    found = [lang for lang, _ in (detect(t) for t in texts if len(t.strip()) >= 20) if lang]
    if not found:
        return ["und"]
    shares = {lang: found.count(lang) / len(found) for lang in set(found)}
    return sorted(
        (lang for lang, share in shares.items() if share >= LANGUAGE_SHARE), key=lambda x: -shares[x]
    )


def render_card(data: CardData) -> str:
    """The README.md text for one exported format."""
    config = data.config
    lines = [
        "---",
        yaml.safe_dump(front_matter(data), sort_keys=False, allow_unicode=True).strip(),
        "---",
        EXPORT_MARK,
        "",
        f"# {graph_name(config)} · {data.format_name}",
        "",
        f"Synthesized with synth (pip install agentsynth) by the `{graph_name(config)}` graph "
        f"(version {config.get('graph_version')}): {data.graph_description}",
        "",
        f"Format `{data.format_name}`: {data.format_description}.",
        "",
        "## How it was made",
        "",
        *_provenance(data),
        "",
        "## Counts",
        "",
        *_counts(data),
        "",
        "## Load and train",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        *[f'{split} = load_dataset("PATH_OR_REPO", split="{split}")' for split in data.files],
        "```",
        "",
        _training_hint(data.format_name),
        "",
    ]
    if data.sample is not None:
        text = json.dumps(data.sample, ensure_ascii=False, indent=2, default=str)
        lines += ["## A sample record", "", "```json", text[:4000], "```", ""]
    return redact("\n".join(lines))


def _provenance(data: CardData) -> list[str]:
    config = data.config
    models: Mapping[str, str] = config.get("models") or {}
    seed_license = data.seed_license or "not recorded: check the seed data's license before publishing"
    lines = [
        f"- Seed data: {_seed_files(config)}; license: {seed_license} (it governs this derived data)",
        f"- Models: {', '.join(f'`{role}` = `{spec}`' for role, spec in models.items())}",
        f"- Graph options: `{json.dumps(config.get('options', {}), sort_keys=True, default=str)}`",
        f"- Configuration fingerprint: `{config.get('fingerprint')}`",
        "",
        "| role | template hash | model | sampling |",
        "|---|---|---|---|",
    ]
    for role, digest in sorted(data.role_templates.items()):
        spec = models.get(role, models.get("default", ""))
        sampling = json.dumps(dict(data.role_sampling.get(role) or {}), sort_keys=True) or "{}"
        lines.append(f"| `{role}` | `{digest}` | `{spec}` | `{sampling}` (backend defaults for the rest) |")
    return lines


def _seed_files(config: Mapping[str, Any]) -> str:
    """Every input file the run was made from, with its sha256 (older runs recorded one ``input``)."""
    inputs = config.get("inputs") or [{"path": config.get("input"), "sha256": ""}]
    return ", ".join(
        f"`{i.get('path')}`" + (f" (sha256 `{i['sha256'][:16]}`)" if i.get("sha256") else "") for i in inputs
    )


def _counts(data: CardData) -> list[str]:
    usage = data.usage
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(data.filter_reasons.items())) or "none"
    split_rows = ", ".join(f"{split} {n}" for split, (_, n) in data.files.items())
    lines = [
        f"- Trajectories by status: {', '.join(f'{k} {v}' for k, v in sorted(data.counts.items()))}",
        f"- Filtered by reason: {reasons}",
        f"- Rows in this export: {data.rows} ({split_rows})",
        f"- Tokens: {usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion "
        f"in {usage.get('calls', 0)} model calls",
    ]
    if data.live_run:
        lines.append(
            f"- **Partial snapshot**: exported while a `synth run` was still writing ({data.live_run}); "
            "re-export when it has finished for the complete data"
        )
    if data.split_seed is not None:
        lines.append(f"- Splits drawn by seed row, shuffled with seed {data.split_seed}")
    if data.filters_applied:
        lines.append("- Filters applied (`synth filter`):")
        lines += [f"  - `{json.dumps(dict(spec), sort_keys=True)}`" for spec in data.filters_applied]
    return lines


def _training_hint(format_name: str) -> str:
    if format_name.startswith("dpo") or format_name == "atm-dpo":
        return (
            "Train with TRL's `DPOTrainer` (conversational `prompt`/`chosen`/`rejected` columns), e.g. "
            "`synth train dpo` (see docs/training.md)."
        )
    if format_name.startswith("rl"):
        return (
            "Use with TRL's `GRPOTrainer`: `prompt` plus the reward fields (gold `answers`, a `reference`), "
            "which TRL passes to reward functions as keyword arguments."
        )
    if format_name == "corrections" or format_name.endswith("short"):
        return (
            "Train with TRL's `SFTTrainer` as is: conversational `prompt`/`completion` rows, trained on the "
            "completion only (TRL's default for this format)."
        )
    return (
        "Train with TRL's `SFTTrainer` as is (`messages`); use `assistant_only_loss=True` so only assistant "
        "turns are trained, e.g. `synth train sft` (see docs/training.md)."
    )
