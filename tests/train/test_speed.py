"""The LM head at loss positions only gives the same losses and gradients as the full logits; packed
sequences do not see each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.fixtures_train import tiny_model
from train.config import RESUMABLE_KEYS, SFTSettings
from train.mito import IGNORE, answer_loss, mito_loss
from train.speed import compact_head_enabled, loss_positions, use_compact_head


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def _model(folder: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()


def _batch(vocab: int) -> tuple[Any, Any, Any]:
    """Two rows, the second right-padded, labels only on a few 'assistant' positions."""
    import torch

    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = torch.full_like(ids, IGNORE)
    labels[0, 6:11] = ids[0, 6:11]
    labels[1, 4:9] = ids[1, 4:9]
    return ids, mask, labels


def _full_logits_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)


def _grads(model: Any, loss: Any) -> list[Any]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_fused_head_at_loss_positions_equals_full_logits_loss_and_gradients(model_folder: Path) -> None:
    from trl.trainer.utils import add_fused_lm_head

    model = _model(model_folder)
    ids, mask, labels = _batch(model.config.vocab_size)
    reference = _full_logits_loss(model, ids, mask, labels)
    reference_grads = _grads(model, reference)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    try:
        for compact in (True, False):
            use_compact_head(compact)
            assert compact_head_enabled() is compact
            out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
            assert float(out.loss.detach()) == pytest.approx(float(reference), abs=1e-5)
            grads = _grads(model, out.loss)
            assert len(grads) == len(reference_grads)
            for got, want in zip(grads, reference_grads, strict=True):
                assert float((got - want).abs().max()) < 1e-5
    finally:
        use_compact_head(True)


def test_mito_loss_from_answer_positions_equals_full_logits(model_folder: Path) -> None:
    model = _model(model_folder)
    ids, mask, labels = _batch(model.config.vocab_size)
    adv_ids = ids.clone()
    adv_ids[:, :3] = ids[:, 3:6]  # another "context", the same answer tokens at the same places
    full = mito_loss(
        model(input_ids=ids, attention_mask=mask).logits,
        model(input_ids=adv_ids, attention_mask=mask).logits,
        labels,
        labels,
        beta=0.5,
    )
    keep = loss_positions(labels)
    assert int(keep.sum()) == int((labels[:, 1:] != IGNORE).sum())
    clean = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    assert tuple(clean.shape) == (int(keep.sum()), model.config.vocab_size)
    selected = answer_loss(
        clean, model(input_ids=adv_ids, attention_mask=mask, logits_to_keep=keep).logits, labels, labels, 0.5
    )
    for got, want in zip(selected, full, strict=True):
        assert float(got) == pytest.approx(float(want), abs=1e-5)
    assert float(full[2]) > 0  # the contexts differ: a real KL term was compared


def test_packed_sequences_do_not_attend_across_examples(model_folder: Path) -> None:
    """TRL's padding-free packing (position_ids restart per example, no attention mask): transformers
    builds a block-diagonal mask from them (training runs without a KV cache), so each example's logits
    equal its unpacked logits."""
    import torch

    model = _model(model_folder)
    gen = torch.Generator().manual_seed(2)
    a, b = (torch.randint(4, model.config.vocab_size, (n,), generator=gen) for n in (7, 5))
    with torch.no_grad():
        alone = [model(input_ids=x[None]).logits[0] for x in (a, b)]
        positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
        packed = model(input_ids=torch.cat([a, b])[None], position_ids=positions, use_cache=False).logits[0]
    assert torch.allclose(packed[:7], alone[0], atol=1e-5)
    assert torch.allclose(packed[7:], alone[1], atol=1e-5)


def test_head_on_defaults_to_loss_positions_and_may_change_on_resume() -> None:
    settings = SFTSettings(model="m", output_dir="o", data="d")
    assert settings.head_on == "loss" and settings.group_by_length is False
    assert "head_on" in RESUMABLE_KEYS


def test_sft_runs_train_the_same_with_the_head_at_loss_positions_or_everywhere(
    model_folder: Path, tmp_path: Path
) -> None:
    """End to end through `synth train sft`: the switch changes where the head runs, not the training."""
    from tests.train.fixtures_train import base_settings, smart_long_row, write_dataset
    from train.runfolder import RunResult
    from train.sft import run_sft

    data = write_dataset(tmp_path / "data", [smart_long_row(i) for i in range(4)])
    losses = {}
    for head_on in ("all", "loss"):
        settings = SFTSettings(**base_settings(model_folder, data, tmp_path / head_on, head_on=head_on))
        result = run_sft(settings, log=lambda _: None)
        assert isinstance(result, RunResult) and result.train_loss is not None
        losses[head_on] = result.train_loss
    assert compact_head_enabled()
    assert losses["loss"] == pytest.approx(losses["all"], abs=1e-5)


def test_sft_packs_and_groups_by_length(model_folder: Path, tmp_path: Path) -> None:
    from tests.train.fixtures_train import base_settings, smart_long_row, write_dataset
    from train.runfolder import RunResult
    from train.sft import run_sft

    data = write_dataset(tmp_path / "data", [smart_long_row(i) for i in range(6)])
    for name, extra in (("packed", {"packing": True}), ("grouped", {"group_by_length": True})):
        settings = SFTSettings(**base_settings(model_folder, data, tmp_path / name, **extra))
        result = run_sft(settings, log=lambda _: None)
        assert isinstance(result, RunResult) and result.global_step == 2 and result.train_loss is not None


def test_compact_head_is_a_no_op_under_a_trl_without_the_fused_head(monkeypatch: pytest.MonkeyPatch) -> None:
    import trl.trainer.utils as trl_utils

    import train.speed

    monkeypatch.setattr(train.speed, "_original", None)
    monkeypatch.delattr(trl_utils, "_use_triton")
    assert use_compact_head(True) is False and not hasattr(trl_utils, "_use_triton")
