"""An `rl` export (SMART's prompt + gold answers), written exactly as `synth export RUN -f rl` writes it."""

from __future__ import annotations

from pathlib import Path

QUESTIONS = ["Who wrote Hamlet?", "Who painted the Mona Lisa?", "What is the capital of France?"]
GOLD = [["William Shakespeare", "Shakespeare"], ["Leonardo da Vinci"], ["Paris"]]


def rl_export(folder: Path, copies: int = 2) -> Path:
    """``copies`` x 3 questions through SMART's real `rl` export format, as a parquet dataset folder."""
    from datasets import Dataset

    from graphs.smart import GRAPH
    from synth.trajectory import Trajectory

    fmt = GRAPH.exports["rl"]
    rows = [
        row
        for i, (question, answers) in enumerate(zip(QUESTIONS * copies, GOLD * copies, strict=True))
        for row in fmt.rows(
            Trajectory(
                id=f"t{i}",
                graph="smart",
                seed={"instruction": question},
                status="ok",
                result={"instruction": question, "answers": answers},
            )
        )
    ]
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=fmt.features()).to_parquet(str(folder / "data" / "train.parquet"))
    return folder
