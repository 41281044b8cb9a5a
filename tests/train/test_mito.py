"""MITO: CE on the clean context + beta * token KL(attacked || clean) on aligned answer tokens.

What is detached (train/mito.py): nothing of the policy by default — the KL gradient reaches both the
attacked- and the clean-context pass; with ``stop_gradient_clean`` the clean distribution is a fixed KL
target and only the CE trains it. Ids, masks and labels carry no gradient, the frozen base (LoRA) none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.fixtures_train import PASSAGE, base_settings, tiny_model, write_dataset
from train.config import MITOSettings
from train.errors import TrainError
from train.job import build_plan
from train.mito import IGNORE, build_mito_trainer, mito_loss, run_mito, tokenize_row
from train.model_setup import load_tokenizer
from train.runfolder import RunResult

FABRICATION = "Hamlet is a comedy written by Christopher Marlowe in 1720, as every historian agrees."


def question(*passages: str) -> list[dict[str, str]]:
    context = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [{"role": "user", "content": f"{context}\nQuestion: Who wrote Hamlet?"}]


def mito_row(attacked: bool = True) -> dict[str, Any]:
    clean = question(PASSAGE)
    return {
        "id": "q1",
        "prompt": clean,
        "adv_prompt": question(FABRICATION, PASSAGE) if attacked else clean,
        "answer": "William Shakespeare",
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def logits_and_labels(seed: int = 0) -> tuple[Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 11, generator=generator)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, 5, IGNORE], [IGNORE, 7, 8, 9, 1, 2]])
    return logits, labels


def test_loss_equals_ce_when_the_attacked_context_is_the_clean_one() -> None:
    import torch.nn.functional as F

    logits, labels = logits_and_labels()
    loss, ce, kl = mito_loss(logits, logits.clone(), labels, labels, beta=0.2)
    assert float(kl) == 0.0 and float(loss) == float(ce)
    # The CE is the causal-LM loss on answer tokens (position i predicts label i + 1).
    reference = F.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    assert float(ce) == pytest.approx(float(reference), rel=1e-6)


def test_kl_grows_with_the_difference_between_contexts() -> None:
    import torch

    logits, labels = logits_and_labels()
    shift = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    kls = [
        float(mito_loss(logits, logits + scale * shift, labels, labels, beta=0.2)[2]) for scale in (0.1, 1, 3)
    ]
    assert 0 < kls[0] < kls[1] < kls[2]
    loss, ce, kl = mito_loss(logits, logits + shift, labels, labels, beta=0.5)
    assert float(loss) == pytest.approx(float(ce) + 0.5 * float(kl)) and float(loss) > float(ce)


def test_the_kl_is_over_aligned_answer_positions_not_raw_positions() -> None:
    import torch

    # The attacked context is 2 tokens longer: its answer sits 2 positions later. Same logits at the
    # aligned answer positions -> KL 0, although raw positions differ.
    logits, labels = logits_and_labels()
    adv_logits = torch.cat([torch.randn(2, 2, 11), logits], dim=1)
    adv_labels = torch.cat([torch.full((2, 2), IGNORE), labels], dim=1)
    assert float(mito_loss(logits, adv_logits, labels, adv_labels, beta=1.0)[2]) == pytest.approx(0, abs=1e-6)
    wrong = adv_labels.clone()
    wrong[0, 5] = 6  # a different answer token under the attacked context
    with pytest.raises(TrainError, match="same answer tokens"):
        mito_loss(logits, adv_logits, labels, wrong, beta=1.0)


@pytest.mark.parametrize("stop_gradient_clean", [False, True])
def test_what_the_kl_gradient_reaches(stop_gradient_clean: bool) -> None:
    import torch

    logits, labels = logits_and_labels()
    adv = logits + torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    clean_leaf, adv_leaf = logits.clone().requires_grad_(), adv.clone().requires_grad_()
    loss, _, _ = mito_loss(
        clean_leaf, adv_leaf, labels, labels, beta=0.5, stop_gradient_clean=stop_gradient_clean
    )
    loss.backward()
    ce_leaf = logits.clone().requires_grad_()
    mito_loss(ce_leaf, adv, labels, labels, beta=0.0)[0].backward()  # the CE alone
    assert clean_leaf.grad is not None and adv_leaf.grad is not None and ce_leaf.grad is not None
    assert float(adv_leaf.grad.abs().sum()) > 0  # the attacked-context pass is always trained by the KL
    same_as_ce = torch.allclose(clean_leaf.grad, ce_leaf.grad, atol=1e-7)
    assert same_as_ce is stop_gradient_clean  # detached: the clean pass gets the CE gradient only


def test_rows_tokenize_with_the_same_answer_ids_under_both_contexts(model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(model_dir))
    row = tokenize_row(mito_row(), tokenizer, max_length=512)
    answer = [t for t in row["labels"] if t != IGNORE]
    assert answer == [t for t in row["adv_labels"] if t != IGNORE]
    assert row["input_ids"][-len(answer) :] == row["adv_input_ids"][-len(answer) :] == answer
    assert len(row["adv_input_ids"]) > len(row["input_ids"])
    assert tokenizer.decode(answer) == "William Shakespeare" + tokenizer.eos_token
    clean_text = tokenizer.decode(row["input_ids"][: -len(answer)])
    assert PASSAGE in clean_text and FABRICATION not in clean_text and clean_text.endswith("### Assistant\n")
    short = tokenize_row(mito_row(), tokenizer, max_length=32)  # prompts lose their oldest tokens
    assert len(short["adv_input_ids"]) == 32 and short["adv_labels"][-len(answer) :] == answer
    with pytest.raises(TrainError, match="row 3: answer must be a non-empty string"):
        tokenize_row({**mito_row(), "answer": ""}, tokenizer, 512, where="row 3")


def test_trainer_loss_is_sft_ce_on_identical_contexts_and_trains_only_the_adapter(
    model_dir: Path, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "same", [mito_row(attacked=False), mito_row(attacked=True)])
    settings = MITOSettings(**base_settings(model_dir, data, tmp_path / "out"))
    _, job = build_plan("mito", settings)
    job.tokenizer = load_tokenizer(job.base)
    trainer = build_mito_trainer(job)
    model = trainer.model
    model.train()
    collate = trainer.data_collator
    same = collate([trainer.train_dataset[0]])
    attacked = collate([trainer.train_dataset[1]])
    sft_ce = float(model(input_ids=same["input_ids"], labels=same["labels"]).loss)
    assert float(trainer.compute_loss(model, same)) == pytest.approx(sft_ce, rel=1e-5)
    loss = trainer.compute_loss(model, attacked)
    assert float(loss) > sft_ce  # same clean context and answer, plus a positive KL
    loss.backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained and all("lora_" in name for name in trained)
    assert all(p.grad is None for name, p in model.named_parameters() if "lora_" not in name)


def test_two_mito_steps_write_an_adapter_and_log_both_terms(model_dir: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    entries: list[dict[str, float]] = []

    class Keep(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            entries.append(dict(logs or {}))

    data = write_dataset(tmp_path / "mito", [mito_row(), mito_row(attacked=False)] * 2)
    settings = MITOSettings(**base_settings(model_dir, data, tmp_path / "out", beta=0.2))
    result = run_mito(settings, callbacks=[Keep()], log=lambda _: None)
    assert isinstance(result, RunResult) and result.kind == "mito" and result.global_step == 2
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    kl = [entry["mito/kl"] for entry in entries if "mito/kl" in entry]
    ce = [entry["mito/ce"] for entry in entries if "mito/ce" in entry]
    assert len(kl) == len(ce) == 2 and all(value > 0 for value in kl + ce)

    with pytest.raises(TrainError, match="it needs MITO rows with prompt"):
        odd = write_dataset(tmp_path / "odd", [{"prompt": "q", "answer": "a"}])
        run_mito(MITOSettings(**base_settings(model_dir, odd, tmp_path / "o2")), dry_run=True)
