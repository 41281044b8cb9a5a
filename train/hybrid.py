"""``synth train hybrid``: two sequential stages in one command, each a normal run folder.

* ``recipe: eto`` (SFT warm-up, then DPO, as in ETO/IPR): stage 1 SFT -> its adapter is merged into the
  base -> stage 2 trains a *new* LoRA with DPO on the merged model. The DPO reference (the adapter switched
  off) is therefore the SFT model, not the untuned base: DPO then moves the policy away from the warmed-up
  model, which is what the recipe means.
* ``recipe: smart`` (SMART's two-stage SFT): stage 1 on short trajectories (one role segment each),
  stage 2 on long ones (whole transcripts), again a new LoRA on the merged stage-1 model.

Layout: ``OUTPUT_DIR/config.yaml`` (the hybrid config), ``OUTPUT_DIR/stage1/`` and ``OUTPUT_DIR/stage2/``
(run folders; stage 1 always has ``merged/``), ``OUTPUT_DIR/result.json``. Re-running resumes whichever
stage was interrupted; a finished stage 1 is not trained again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from train.config import DPOSettings, HybridSettings, SFTSettings, dump_settings
from train.dpo import run_dpo
from train.job import Plan, require_training
from train.runfolder import RunFolder, RunResult, is_main_process, prepare_synced
from train.sft import run_sft

#: Placeholder model path of stage 2 in a dry run (stage 1 has not been merged yet).
PENDING = "<stage1/merged>"


def stage_plan(settings: HybridSettings) -> list[tuple[str, SFTSettings | DPOSettings]]:
    """Both stages' full settings; stage 2's model is stage 1's merged (or fully tuned) model."""
    out = Path(settings.output_dir)
    stage1 = settings.stage_settings(1, settings.model, str(out / "stage1"))
    # LoRA stage 1 is merged into merged/; a fully fine-tuned stage 1 is itself the model (model/).
    result = "model" if stage1.tuning == "full" else "merged"
    stage2 = settings.stage_settings(2, str(out / "stage1" / result), str(out / "stage2"))
    return [("sft", stage1), ("dpo" if settings.recipe == "eto" else "sft", stage2)]


def _run(kind: str, settings: SFTSettings | DPOSettings, **kwargs: Any) -> RunResult | Plan:
    if kind == "dpo":
        assert isinstance(settings, DPOSettings)
        return run_dpo(settings, **kwargs)
    assert isinstance(settings, SFTSettings)
    return run_sft(settings, **kwargs)


def run_hybrid(
    settings: HybridSettings,
    *,
    fresh: bool = False,
    dry_run: bool = False,
    callbacks: Sequence[Any] = (),
    stage_callbacks: dict[int, Sequence[Any]] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult | list[Plan | str]:
    """Run stage 1, merge, run stage 2 on the merged model. ``dry_run`` returns stage 1's plan and
    stage 2's settings (its model does not exist until stage 1 is merged)."""
    require_training("hybrid")
    stages = stage_plan(settings)
    folder = RunFolder(Path(settings.output_dir))
    if dry_run:
        first = _run(stages[0][0], stages[0][1], dry_run=True, log=log)
        assert isinstance(first, Plan)
        second = stages[1][1]
        return [
            first,
            f"stage 2 ({stages[1][0]}, recipe {settings.recipe}) -> {second.output_dir}: new LoRA on "
            f"{second.model} (written by stage 1), data {second.data}",
        ]
    state, _ = prepare_synced(folder, dump_settings("hybrid", settings), None, fresh)
    if state == "done":
        return folder.completed_result(log)
    started = time.monotonic()
    results: list[RunResult] = []
    for number, (kind, stage) in enumerate(stages, 1):
        log(f"== hybrid ({settings.recipe}) stage {number}: {kind} on {stage.data}")
        extra = list(callbacks) + list((stage_callbacks or {}).get(number, ()))
        result = _run(kind, stage, callbacks=extra, log=log)
        assert isinstance(result, RunResult)
        results.append(result)
    last = results[-1]
    final = RunResult(
        kind=f"hybrid-{settings.recipe}",
        output_dir=str(folder.path),
        status="trained",
        adapter=last.adapter,
        model=last.model,
        merged=last.merged,
        global_step=sum(r.global_step for r in results),
        train_loss=last.train_loss,
        seconds=round(time.monotonic() - started, 2),
        stages=[asdict(r) for r in results],
    )
    if is_main_process():
        folder.write_result(final)
    return final
