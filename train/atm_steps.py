"""The steps of ``synth train atm`` that are not training: synthesis, export, evaluation, the figure.

Each step is skipped when its output is complete, so a re-run of the loop resumes where it stopped:

* synthesis is ``synth run atm`` (the same session code): its run folder resumes by itself, and a
  finished run re-opens in a second (its rows are skipped);
* an export is written to a temp folder and renamed (``synth.dataset.export``): a folder with its
  ``README.md`` is complete and is never rewritten, so a stage trained on it resumes on the same bytes;
* an evaluation is complete when its ``summary.json`` exists.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synth.metrics import normalize_answer
from train.atm_config import AtmSettings
from train.errors import TrainError
from train.qa import load_qa

Log = Callable[[str], None]


def as_spec(model: str) -> str:
    """A model reference as a synth spec: ``local:`` + a folder or built-in name, unless it has a backend."""
    return model if model.split(":", 1)[0] in ("local", "openai", "replay") else f"local:{model}"


def starting_model(model: str) -> str:
    """A ``synth train`` run folder given as a starting model is its final model (``merged/``...)."""
    folder = Path(model.removeprefix("local:")).expanduser()
    if (folder / "result.json").is_file() and not (folder / "config.json").is_file():
        from train.model_setup import resolve_model

        return resolve_model(str(folder))
    return model


def as_folder_ref(model: str) -> str:
    """A model reference for ``synth eval`` / training: a folder or built-in name (no ``local:``)."""
    return model.removeprefix("local:")


def check_disjoint(settings: AtmSettings) -> tuple[int, int]:
    """(train rows, eval rows); refuses an eval set that shares a question with the training seeds."""
    train = load_qa(Path(settings.data), settings.limit)
    held_out = load_qa(Path(settings.eval_data), settings.eval_limit)
    seen = {normalize_answer(row["question"]) for row in train}
    shared = [row["question"] for row in held_out if normalize_answer(row["question"]) in seen]
    if shared:
        raise TrainError(
            f"eval_data {settings.eval_data} shares {len(shared)} question(s) with data {settings.data} "
            f"(e.g. {shared[0]!r}); EM under attack must be measured on questions never trained on: "
            "split the file into disjoint parts (or use eval_limit / limit on disjoint files)"
        )
    return len(train), len(held_out)


def synthesize(
    settings: AtmSettings,
    *,
    data: str,
    limit: int | None,
    out: Path,
    attacker: str,
    generator: str,
    log: Log,
) -> dict[str, Any]:
    """Run the ATM graph (attacker role = ``attacker`` spec, generator = ``generator``) into ``out``."""
    from synth.engine.session import RunRequest, run_session
    from synth.models.local.engine import close_shared_engines

    request = RunRequest(
        graph="atm",
        input=Path(data),
        out=out,
        models={"default": as_spec(generator), "attacker": attacker},
        options=settings.atm,
        limit=limit,
        concurrency=settings.run.concurrency,
        max_calls=settings.run.max_calls,
        timeout=settings.run.timeout,
        retries=settings.run.retries,
        cache=settings.run.cache,
        api_key_env=settings.run.api_key_env,
    )
    log(f"== synthesize: ATM graph on {data} -> {out} (attacker {attacker}, generator {as_spec(generator)})")
    try:
        summary, _ = asyncio.run(run_session(request))
    finally:
        close_shared_engines()  # free the in-process models before a training stage loads its own
    stats = {**run_stats(out), "seconds": round(summary.elapsed_s, 1)}
    log(f"   {summary.written} rows written now, {summary.skipped} already done; {stats}")
    return stats


def run_stats(run: Path) -> dict[str, Any]:
    """Row counts and mean ATM scores of a run: how misleading the attacker is, how robust the generator."""
    from graphs.atm.trajectory import AtmScores
    from synth.engine.store import RunStore

    store = RunStore(run)
    try:
        counts = dict(store.counts())
        scores = [AtmScores.model_validate(r.scores) for r in store.iter_records("ok")]
    finally:
        store.close()
    means = {}
    for key in ("nll_max", "nll_min", "gold_nll", "exact_match_clean", "exact_match_attacked"):
        values = [getattr(s, key) for s in scores]
        if values and all(v is not None for v in values):
            means[key] = round(sum(float(v) for v in values) / len(values), 4)
    return {"rows": counts, "mean": means}


def seed_cache(source: Path, run: Path) -> bool:
    """Copy ``source``'s call cache into the (not yet started) run ``run``: calls with identical requests
    (the same attacker model, prompts and sample index) are then replayed instead of sampled again."""
    target = run / "calls.sqlite"
    if not (source / "calls.sqlite").is_file() or run.exists():
        return False
    run.mkdir(parents=True)
    with sqlite3.connect(source / "calls.sqlite") as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return True


def export(run: Path, fmt: str, out: Path, log: Log) -> int:
    """Export ``fmt`` from ``run`` into ``out`` once; returns its row count."""
    from graphs.atm import GRAPH
    from synth.dataset.export import export_run

    if not (out / "README.md").is_file():
        result = export_run(run, GRAPH, fmt, out)
        log(f"   export {result.describe()}")
        return result.rows
    return export_rows(out)


def export_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.rglob("*.parquet")))


def evaluate(settings: AtmSettings, generator: str, attack: Path, out: Path, log: Log) -> dict[str, Any]:
    """EM / F1 of ``generator`` on the clean and attacked contexts of the held-out ``attack`` run."""
    from train.eval_attack import run_attack_eval

    done = out / "summary.json"
    if done.is_file():
        return dict(json.loads(done.read_text(encoding="utf-8")))
    log(f"== evaluate {generator} on {attack} (clean vs attacked) -> {out}")
    summary = run_attack_eval(
        as_folder_ref(generator),
        attack,
        out=out,
        style=settings.eval.style,
        max_new_tokens=settings.eval.max_new_tokens,
        batch_size=settings.eval.batch_size,
    )
    log(
        f"   EM clean {summary['exact_match']:.3f}, under attack {summary['attacked_exact_match']:.3f} "
        f"({summary['rows']} rows)"
    )
    return summary


def figure(checkpoints: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """A bar chart of EM on clean vs attacked contexts for every generator checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c["name"] for c in checkpoints]
    clean = [c["eval"]["exact_match"] for c in checkpoints]
    attacked = [c["eval"]["attacked_exact_match"] for c in checkpoints]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names)), 3.2), dpi=120)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], clean, width=0.4, label="clean context")
    ax.bar([x + 0.2 for x in xs], attacked, width=0.4, label="under attack")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("exact match")
    rows = checkpoints[0]["eval"]["rows"]
    ax.set_title(f"ATM: generator EM on {rows} held-out questions")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
