"""``synth train atm --iterations T``: ATM (Zhu et al., EMNLP 2024) end to end.

Iteration t (1..T), with attacker A_t and generator G_t:

1. **synthesize** — the ATM graph over the training seeds (``synth run atm``'s session code), attacker role
   on A_t, generator role on G_t: N fabrications per question, each ranked by G_t's NLL of the gold answer;
2. **export** ``atm-dpo`` (most vs least misleading fabrication) and ``mito`` (clean vs attacked prompt);
3. **attacker DPO** (beta 0.2) on ``atm-dpo`` from A_t, merged -> A_{t+1} (skipped, A_t kept, when no
   question had two fabrications of different NLL);
4. **generator MITO** on ``mito`` from G_t, merged -> G_{t+1};
5. **evaluate** G_{t+1}: EM / F1 on the clean and the attacked contexts of a held-out ATM run.

The held-out attack (``eval_attack/``) is built once, before iteration 1, by the starting attacker on
``eval_data``, so every checkpoint faces the same fabrications. With ``initial_sft`` a stage 0 first
runs the graph over the training seeds, trains G on its ``sft`` export (the paper's 30 % closed-book /
70 % with documents) and evaluates it; iteration 1 then starts from that generator and replays stage 0's
attacker calls from the call cache (same attacker, same prompts: re-sampling them would only cost time).

Layout::

    OUTPUT_DIR/
      config.yaml  result.json  summary.json  em_under_attack.png
      eval_attack/                     ATM run on eval_data (the fixed attack)
      base/eval/                       the starting generator, clean vs attacked
      sft/{run,data,generator,eval}/   stage 0 (initial_sft)
      iteration_1/{run,atm-dpo,mito,attacker,generator,eval}/, summary.json
      ...

Every step skips finished work (run folders resume, exports and evals are written once, training runs
resume from their checkpoints), so re-running the command resumes the loop; raising ``--iterations``
extends a finished loop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from train.atm_config import AtmSettings
from train.atm_steps import (
    as_spec,
    check_disjoint,
    evaluate,
    export,
    figure,
    seed_cache,
    starting_model,
    synthesize,
)
from train.job import require_training
from train.runfolder import RunFolder, RunResult, prepare_synced, write_json

Log = Callable[[str], None]


@dataclass
class Checkpoint:
    """The models one iteration starts from: the attacker's spec and weights, the generator's weights."""

    attacker_spec: str
    attacker: str
    generator: str


def _train(kind: str, settings: Any, log: Log) -> RunResult:
    from train.dpo import run_dpo
    from train.mito import run_mito
    from train.sft import run_sft

    runner: dict[str, Callable[..., Any]] = {"sft": run_sft, "dpo": run_dpo, "mito": run_mito}
    result = runner[kind](settings, log=log)
    assert isinstance(result, RunResult)
    return result


def dry_run_plan(settings: AtmSettings) -> list[str]:
    """What the loop will do, without loading a model."""
    out = Path(settings.output_dir)
    start = settings.attacker_spec or as_spec(settings.attacker_model)
    lines = [
        f"atm loop -> {out}: {settings.iterations} iteration(s); generator {settings.model}, attacker "
        f"{settings.attacker_model} (iteration 1 served by {start})",
        f"  eval attack: ATM graph on {settings.eval_data} -> {out / 'eval_attack'}; base eval -> "
        f"{out / 'base' / 'eval'}",
    ]
    if settings.initial_sft:
        lines.append(f"  stage 0: ATM graph on {settings.data}, SFT on its sft export -> {out / 'sft'}")
    for t in range(1, settings.iterations + 1):
        it = out / f"iteration_{t}"
        attacker = "attacker DPO (beta {beta})".format(beta=settings.dpo.get("beta", 0.2))
        lines.append(
            f"  iteration {t}: ATM graph on {settings.data} -> {it / 'run'}; "
            f"{attacker if settings.train_attacker else 'attacker kept'}; generator MITO "
            f"(beta {settings.mito.get('beta', 0.2)}); eval -> {it / 'eval'}"
        )
    return lines


def run_atm_loop(
    settings: AtmSettings, *, fresh: bool = False, dry_run: bool = False, log: Log = print
) -> dict[str, Any] | list[str]:
    """Run (or resume) the loop; returns the summary (``dry_run``: the plan, as lines)."""
    from graphs.atm import GRAPH

    GRAPH.resolve_options(settings.atm)  # an unknown graph option fails before any model loads
    rows = check_disjoint(settings)
    if dry_run:
        return [*dry_run_plan(settings), f"  data: {rows[0]} training seeds, {rows[1]} held-out questions"]
    require_training("atm")  # before the first round synthesizes data for hours
    out = Path(settings.output_dir)
    folder = RunFolder(out)
    config = {"kind": "atm", **settings.model_dump(mode="json")}
    state, _ = prepare_synced(folder, config, None, fresh)
    if state == "done" and (out / "summary.json").is_file():
        log(f"{out} is already complete (result.json); use --fresh to run it again")
        return dict(json.loads((out / "summary.json").read_text(encoding="utf-8")))
    started = time.monotonic()
    attacker = starting_model(settings.attacker_model)
    current = Checkpoint(
        attacker_spec=settings.attacker_spec or as_spec(attacker),
        attacker=attacker,
        generator=starting_model(settings.model),
    )
    attack = out / "eval_attack"
    eval_stats = synthesize(
        settings,
        data=settings.eval_data,
        limit=settings.eval_limit,
        out=attack,
        attacker=current.attacker_spec,
        generator=current.generator,
        log=log,
    )
    base = evaluate(settings, current.generator, attack, out / "base" / "eval", log)
    checkpoints: list[dict[str, Any]] = [{"name": "base", "generator": current.generator, "eval": base}]
    if settings.initial_sft:
        current = _stage0(settings, current, out / "sft", log)
        tuned = evaluate(settings, current.generator, attack, out / "sft" / "eval", log)
        checkpoints.append({"name": "sft", "generator": current.generator, "eval": tuned})
    iterations = []
    for t in range(1, settings.iterations + 1):
        record, current = _iteration(settings, t, current, attack, out, log)
        iterations.append(record)
        checkpoints.append({"name": f"iteration_{t}", "generator": current.generator, "eval": record["eval"]})
    seconds = round(time.monotonic() - started, 1)
    summary: dict[str, Any] = {
        "output_dir": str(out),
        "iterations": settings.iterations,
        "eval_attack": {"run": str(attack), **eval_stats},
        "checkpoints": [_figures(c) for c in checkpoints],
        "iteration_details": iterations,
        "final_generator": current.generator,
        "final_attacker": current.attacker,
        "figure": str(figure(checkpoints, out / "em_under_attack.png")),
        "seconds": seconds,
    }
    write_json(out / "summary.json", summary)
    folder.write_result(
        RunResult(
            kind="atm",
            output_dir=str(out),
            status="trained",
            merged=current.generator,
            seconds=seconds,
            stages=iterations,
        )
    )
    for line in describe(summary):
        log(line)
    return summary


def _figures(checkpoint: dict[str, Any]) -> dict[str, Any]:
    keys = ("exact_match", "f1", "attacked_exact_match", "attacked_f1", "misled", "rows", "predictions")
    return {"name": checkpoint["name"], "generator": checkpoint["generator"]} | {
        k: checkpoint["eval"][k] for k in keys
    }


def _stage0(settings: AtmSettings, current: Checkpoint, where: Path, log: Log) -> Checkpoint:
    """Initial generator SFT on the ATM ``sft`` export of the training seeds."""
    synthesize(
        settings,
        data=settings.data,
        limit=settings.limit,
        out=where / "run",
        attacker=current.attacker_spec,
        generator=current.generator,
        log=log,
    )
    export(where / "run", "sft", where / "data", log)
    log(f"== stage 0: generator SFT on {where / 'data'}")
    stage = settings.stage_settings("sft", current.generator, str(where / "data"), where / "generator")
    return Checkpoint(current.attacker_spec, current.attacker, _train("sft", stage, log).final)


def _iteration(
    settings: AtmSettings, t: int, current: Checkpoint, attack: Path, out: Path, log: Log
) -> tuple[dict[str, Any], Checkpoint]:
    """One ATM iteration; returns its record (also written to ``iteration_t/summary.json``)."""
    it = out / f"iteration_{t}"
    log(f"== ATM iteration {t}/{settings.iterations} -> {it}")
    if t == 1 and settings.initial_sft and seed_cache(out / "sft" / "run", it / "run"):
        log("   replaying stage 0's attacker calls from its call cache (same attacker, same prompts)")
    stats = synthesize(
        settings,
        data=settings.data,
        limit=settings.limit,
        out=it / "run",
        attacker=current.attacker_spec,
        generator=current.generator,
        log=log,
    )
    pairs = export(it / "run", "atm-dpo", it / "atm-dpo", log)
    mito_rows = export(it / "run", "mito", it / "mito", log)
    attacker, attacker_spec, dpo = current.attacker, current.attacker_spec, None
    if settings.train_attacker and pairs:
        log(f"== iteration {t}: attacker DPO on {pairs} pairs")
        stage = settings.stage_settings("dpo", current.attacker, str(it / "atm-dpo"), it / "attacker")
        trained = _train("dpo", stage, log)
        attacker, attacker_spec, dpo = trained.final, as_spec(trained.final), asdict(trained)
    elif settings.train_attacker:
        log(f"   no attacker pair in iteration {t} (every question's fabrications tied): attacker kept")
    log(f"== iteration {t}: generator MITO on {mito_rows} rows")
    stage = settings.stage_settings("mito", current.generator, str(it / "mito"), it / "generator")
    mito = _train("mito", stage, log)
    following = Checkpoint(attacker_spec, attacker, mito.final)
    record = {
        "iteration": t,
        "attacker_in": current.attacker_spec,
        "generator_in": current.generator,
        "synthesis": stats,
        "exports": {"atm-dpo": pairs, "mito": mito_rows},
        "attacker_dpo": dpo
        or {"skipped": "no pairs" if settings.train_attacker else "train_attacker: false"},
        "generator_mito": asdict(mito),
        "attacker_out": attacker_spec,
        "generator_out": following.generator,
        "eval": evaluate(settings, following.generator, attack, it / "eval", log),
    }
    write_json(it / "summary.json", record)
    return record, following


def describe(summary: dict[str, Any]) -> list[str]:
    """The summary as a table: EM / F1 clean and under attack per generator checkpoint."""
    rows = summary["checkpoints"][0]["rows"]
    lines = [f"EM / F1 on {rows} held-out questions (attack: {summary['eval_attack']['run']}):"]
    lines.append(
        f"  {'checkpoint':<14}{'EM clean':>10}{'EM attacked':>13}{'F1 clean':>10}{'F1 attacked':>13}"
    )
    for c in summary["checkpoints"]:
        lines.append(
            f"  {c['name']:<14}{c['exact_match']:>10.3f}{c['attacked_exact_match']:>13.3f}"
            f"{c['f1']:>10.3f}{c['attacked_f1']:>13.3f}"
        )
    lines.append(f"figure: {summary['figure']}; summary: {Path(summary['output_dir']) / 'summary.json'}")
    return lines
