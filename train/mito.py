"""``synth train mito``: ATM's MITO objective as a loss hook on TRL's ``SFTTrainer``.

Per row ``{prompt, adv_prompt, answer}`` (clean context, attacked context — e.g. with fabricated
passages —, gold answer)::

    loss = CE(answer | prompt) + beta * mean_t KL( p(. | adv_prompt, y<t) || p(. | prompt, y<t) )

over the answer tokens ``t``. Both distributions come from the policy being trained (the paper's
reference-model KL is a constant offset and is left out: it has no gradient). **Alignment**: the answer
is tokenized once and appended to both prompts, so answer token ``t`` is the same id at the same answer
position in both sequences, whatever the prompts' lengths; selecting the label positions row by row
pairs them up. **Gradients**: the loss reaches only the policy's trainable parameters (the LoRA adapter,
or every weight with ``tuning: full``) through both forward passes, as in the authors' code; ids, masks
and labels carry none. ``stop_gradient_clean: true`` detaches the clean distribution inside the KL term:
the KL then only pulls the attacked-context prediction towards the clean one, and the clean prediction
is trained by the CE alone. Dropout is switched off so the two passes differ only by their context
(an attacked context equal to the clean one gives a KL of exactly 0, i.e. plain SFT).

Everything else — model loading, LoRA, optimizer, checkpoints, resume, logging — is SFTTrainer's; only
the dataset preparation (two tokenized contexts per row) and ``compute_loss`` are MITO's. The ATM loop
calls :func:`run_mito` with a ``mito`` export.
"""

from __future__ import annotations

from typing import Any, Unpack

from train.config import MITOSettings
from train.errors import TrainError
from train.job import Job, Plan, RunOptions, execute
from train.runfolder import RunResult
from train.speed import loss_positions

IGNORE = -100


# -- the loss --------------------------------------------------------------------------------------------
def mito_loss(
    clean_logits: Any,
    adv_logits: Any,
    clean_labels: Any,
    adv_labels: Any,
    beta: float,
    *,
    stop_gradient_clean: bool = False,
    num_items: Any = None,
) -> tuple[Any, Any, Any]:
    """(loss, ce, kl) from the two contexts' logits (B, T, V) and labels (B, T; IGNORE off the answer).

    Position ``i`` predicts label ``i + 1``. Each row has the same answer tokens under both contexts, so
    the row-major selections of answer positions line up. ``num_items`` (the answer tokens of the whole
    accumulated batch, from the Trainer) replaces the local count as denominator, so gradient
    accumulation averages over tokens exactly like SFTTrainer's loss.
    """
    clean_mask = clean_labels[:, 1:] != IGNORE
    adv_mask = adv_labels[:, 1:] != IGNORE
    return answer_loss(
        clean_logits[:, :-1][clean_mask],
        adv_logits[:, :-1][adv_mask],
        clean_labels,
        adv_labels,
        beta,
        stop_gradient_clean=stop_gradient_clean,
        num_items=num_items,
    )


def answer_loss(
    clean_logits: Any,
    adv_logits: Any,
    clean_labels: Any,
    adv_labels: Any,
    beta: float,
    *,
    stop_gradient_clean: bool = False,
    num_items: Any = None,
) -> tuple[Any, Any, Any]:
    """:func:`mito_loss` from the logits at the answer positions only, (N, V) each, row-major — what the
    model returns with ``logits_to_keep=loss_positions(labels)`` (the head is not run elsewhere)."""
    import torch.nn.functional as F

    clean_mask = clean_labels[:, 1:] != IGNORE
    adv_mask = adv_labels[:, 1:] != IGNORE
    targets = clean_labels[:, 1:][clean_mask]
    if not bool((clean_mask.sum(1) == adv_mask.sum(1)).all()) or not bool(
        (adv_labels[:, 1:][adv_mask] == targets).all()
    ):
        raise TrainError("MITO rows must carry the same answer tokens under the clean and attacked context")
    clean_logp = F.log_softmax(clean_logits.float(), dim=-1)
    adv_logp = F.log_softmax(adv_logits.float(), dim=-1)
    denominator = num_items if num_items is not None else max(int(targets.numel()), 1)
    ce = F.nll_loss(clean_logp, targets, reduction="sum") / denominator
    target_logp = clean_logp.detach() if stop_gradient_clean else clean_logp
    kl = (adv_logp.exp() * (adv_logp - target_logp)).sum() / denominator
    return ce + beta * kl, ce, kl


# -- data ------------------------------------------------------------------------------------------------
def _text(value: Any, what: str, where: str) -> str:
    if isinstance(value, list):  # a completion-style message list: the assistant content
        value = value[-1]["content"] if value else ""
    if not isinstance(value, str) or not value.strip():
        raise TrainError(f"{where}: {what} must be a non-empty string (got {value!r})")
    return value


def _prompt_ids(prompt: Any, tokenizer: Any, where: str, field: str) -> list[int]:
    if isinstance(prompt, list):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(_text(prompt, field, where))["input_ids"])


def _answer_ids(prompt: Any, answer: str, tokenizer: Any) -> list[int]:
    """The answer as the model produces it after the prompt: for chat prompts, the template's assistant
    turn after the generation prompt (content + end of turn, without the whitespace that separates it
    from a next turn); for plain prompts, the text + EOS."""
    if isinstance(prompt, list):
        head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": answer}], tokenize=False
        )
        suffix = full[len(head) :].rstrip() if full.startswith(head) else answer + tokenizer.eos_token
    else:
        suffix = answer + tokenizer.eos_token
    return list(tokenizer(suffix, add_special_tokens=False)["input_ids"])


def tokenize_row(row: dict[str, Any], tokenizer: Any, max_length: int, where: str = "row") -> dict[str, Any]:
    """Both contexts of one row, each ``prompt ids + the same answer ids``, labels only on the answer.

    Over ``max_length``, prompts lose their oldest tokens (the answer is kept whole, up to half the budget).
    """
    if isinstance(row["prompt"], list) != isinstance(row["adv_prompt"], list):
        raise TrainError(f"{where}: prompt and adv_prompt must both be chat message lists or both strings")
    answer = _answer_ids(row["prompt"], _text(row["answer"], "answer", where), tokenizer)[: max_length // 2]
    out: dict[str, Any] = {}
    for prefix, field in (("", "prompt"), ("adv_", "adv_prompt")):
        prompt = _prompt_ids(row[field], tokenizer, where, field)[-(max_length - len(answer)) :]
        out[f"{prefix}input_ids"] = prompt + answer
        out[f"{prefix}labels"] = [IGNORE] * len(prompt) + answer
    return out


def tokenize_dataset(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    from datasets import Dataset

    rows = [
        tokenize_row(row, tokenizer, max_length, where=f"row {index}")
        for index, row in enumerate(dataset.select_columns(["prompt", "adv_prompt", "answer"]))
    ]
    return Dataset.from_list(rows)


class MITOCollator:
    """Right-pads each context separately: ``input_ids``/``attention_mask``/``labels`` and ``adv_*``."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {}
        for prefix in ("", "adv_"):
            width = max(len(row[f"{prefix}input_ids"]) for row in rows)

            def pad(values: list[int], fill: int, width: int = width) -> list[int]:
                return values + [fill] * (width - len(values))

            ids = [row[f"{prefix}input_ids"] for row in rows]
            batch[f"{prefix}input_ids"] = torch.tensor([pad(v, self.pad_token_id) for v in ids])
            batch[f"{prefix}attention_mask"] = torch.tensor([pad([1] * len(v), 0) for v in ids])
            batch[f"{prefix}labels"] = torch.tensor([pad(row[f"{prefix}labels"], IGNORE) for row in rows])
        return batch


# -- the trainer -----------------------------------------------------------------------------------------
def mito_trainer_class() -> type:
    """``MITOTrainer(SFTTrainer)``, built on first use so importing this module does not import TRL."""
    from trl import SFTTrainer
    from trl.trainer.utils import disable_dropout_in_model

    class MITOTrainer(SFTTrainer):  # type: ignore[misc]
        """SFTTrainer whose loss is MITO's; see the module docs."""

        def __init__(
            self,
            *args: Any,
            beta: float,
            stop_gradient_clean: bool = False,
            head_on_loss: bool = True,
            **kwargs: Any,
        ):
            self.mito_beta = beta
            self.stop_gradient_clean = stop_gradient_clean
            self.head_on_loss = head_on_loss
            super().__init__(*args, **kwargs)
            assert self.model is not None
            disable_dropout_in_model(self.model)

        def _keep(self, labels: Any) -> Any:
            """The answer positions' ``logits_to_keep`` mask (``head_on: loss``), or None (every position)."""
            return loss_positions(labels, IGNORE) if self.head_on_loss else None

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            clean_keep, adv_keep = self._keep(inputs["labels"]), self._keep(inputs["adv_labels"])
            clean = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                use_cache=False,
                **({} if clean_keep is None else {"logits_to_keep": clean_keep}),
            )
            adv = model(
                input_ids=inputs["adv_input_ids"],
                attention_mask=inputs["adv_attention_mask"],
                use_cache=False,
                **({} if adv_keep is None else {"logits_to_keep": adv_keep}),
            )
            loss_of = mito_loss if clean_keep is None else answer_loss
            loss, ce, kl = loss_of(
                clean.logits,
                adv.logits,
                inputs["labels"],
                inputs["adv_labels"],
                self.mito_beta,
                stop_gradient_clean=self.stop_gradient_clean,
                num_items=num_items_in_batch,
            )
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            self._metrics[mode]["mito/ce"].append(float(ce.detach()))
            self._metrics[mode]["mito/kl"].append(float(kl.detach()))
            return (loss, clean) if return_outputs else loss

    return MITOTrainer


def build_mito_trainer(job: Job) -> Any:
    """SFTTrainer (model by path, LoRA via ``peft_config``) with MITO's data and loss."""
    from trl import SFTConfig

    settings = job.settings
    assert isinstance(settings, MITOSettings)
    tokenizer = job.tokenizer
    args = SFTConfig(
        **job.config_arguments(),
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,  # keep the attacked context's columns
        dataset_num_proc=None,
    )
    return mito_trainer_class()(
        args=args,
        train_dataset=tokenize_dataset(job.dataset, tokenizer, settings.max_length),
        data_collator=MITOCollator(tokenizer.pad_token_id),
        **job.trainer_inputs(),
        beta=settings.beta,
        stop_gradient_clean=settings.stop_gradient_clean,
        head_on_loss=settings.head_on == "loss",
    )


def run_mito(settings: MITOSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a MITO run; re-running the same settings resumes it."""
    return execute("mito", settings, build_mito_trainer, **options)
