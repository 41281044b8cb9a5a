"""Greedy, batched generation from a model folder, for ``synth eval qa``.

What makes it fast on a CPU, where one evaluation used to cost ~6 s per prompt:

* **length-sorted batches**: prompts are tokenized once and batched by length (left padding), so a batch
  is not padded up to an outlier; results come back in the input order;
* **stop at the answer**: a row stops generating as soon as :func:`train.qa.answer_complete` says more
  tokens cannot change the scored answer (the first line, or a JSON object's ``answer``) — a base model
  that rambles for ``max_new_tokens`` after a one-line answer no longer holds its whole batch;
* the LM head runs at the last position only (``generate`` passes ``logits_to_keep=1``);
* **a shared prefix is computed once**: when every prompt starts with the same tokens (few-shot prompts
  repeat the same worked examples before each question) their keys/values are computed once and each
  row continues from a copy. Rows are then batched only with rows of the same length: padding between
  the prefix and a row's tokens would change what Gemma's sliding-window layers see (their window counts
  cache slots, pads included), and the answers must be the model's own. On 3-shot SMART prompts this is
  ~1.7x the padded batches' prompts/s (bf16, 2 cores).

``dtype``: see :func:`weights_dtype`. ``fast=False`` keeps the input order and generates every row to
EOS or ``max_new_tokens`` (the speed bench's "before"). Both are greedy on the same prompts; the scored
answers are the same.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synth.extras import require_extra
from train.errors import TrainError
from train.qa import answer_complete
from train.speed import apply_threads

Prompt = tuple[list[dict[str, Any]], str | None]
MIN_SHARED_PREFIX = 64  # tokens: below this a shared prefix is not worth a cache copy per batch


def weights_dtype(name: str, device: str) -> Any:
    """``default`` / ``auto``: the embedded engine's rule — bf16 on GPUs that have it (else fp16), on CPUs
    bf16 when they have native bf16 units (AMX / avx512_bf16: several times faster, and the precision the
    converted weights are stored in), fp32 elsewhere; or ``fp32`` / ``bf16`` / ``fp16``."""
    from synth.models.local.hardware import resolve_dtype

    try:
        return resolve_dtype("auto" if name == "default" else name, device)
    except ValueError as exc:
        raise TrainError(f"--dtype: {exc}") from None


class AnswerStop:
    """A ``StoppingCriteria`` that ends each row once its answer is fixed (one flag per row)."""

    def __init__(self, tokenizer: Any, prompt_length: int) -> None:
        self.tokenizer, self.prompt_length = tokenizer, prompt_length

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([answer_complete(t) for t in texts], dtype=torch.bool, device=input_ids.device)


class FolderGenerator:
    """Greedy, batched generation from a model folder; a LoRA adapter is merged into its base on load."""

    def __init__(
        self, folder: Path, max_new_tokens: int, batch_size: int, fast: bool = True, dtype: str = "default"
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from synth.chat_template import ensure_chat_template

        self.max_new_tokens, self.batch_size, self.fast = max_new_tokens, batch_size, fast
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            apply_threads()
        self.dtype = weights_dtype(dtype, device)
        adapter = (folder / "adapter_config.json").is_file()
        if adapter:
            require_extra(f"evaluating the LoRA adapter {folder}", "train", "peft")
            from peft import PeftModel

            base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
            # merged in fp32, rounded to the run's dtype once (see train.runfolder.merge_adapter)
            base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            model: Any = PeftModel.from_pretrained(base_model, str(folder)).merge_and_unload().to(self.dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=self.dtype)
        self.model = model.to(device).eval()
        self.tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(str(folder)))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: Sequence[Prompt]) -> list[str]:
        """One completion per prompt, in the order of ``prompts``."""
        from synth.chat_template import render_prompt

        texts = [render_prompt(self.tokenizer, m, assistant_header=h) for m, h in prompts]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        order = list(range(len(texts)))
        prefix: list[int] = []
        if self.fast:
            order.sort(key=lambda i: len(encoded[i]), reverse=True)
            prefix = shared_prefix(encoded) if len(encoded) > 1 else []
        cache = self._prefix_cache(prefix) if prefix else None
        outputs: list[str] = [""] * len(texts)
        for rows in self._batches(order, encoded, len(prefix)):
            for i, text in zip(rows, self._batch([encoded[i] for i in rows], cache), strict=True):
                outputs[i] = text
        return outputs

    def _batches(self, order: list[int], encoded: Sequence[Sequence[int]], shared: int) -> list[list[int]]:
        """Rows in ``order``, ``batch_size`` at a time; after a shared prefix, only rows of equal length."""
        if not shared:
            return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        batches: list[list[int]] = []
        for i in order:
            last = batches[-1] if batches else None
            if last and len(last) < self.batch_size and len(encoded[last[0]]) == len(encoded[i]):
                last.append(i)
            else:
                batches.append([i])
        return batches

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """The keys/values of ``prefix`` (one row), computed once for every batch."""
        import torch
        from transformers import DynamicCache

        ids = torch.tensor([prefix], device=self.model.device)
        with torch.no_grad():
            out = self.model(
                input_ids=ids, past_key_values=DynamicCache(config=self.model.config), use_cache=True
            )
        return out.past_key_values

    def _batch(self, ids: list[list[int]], cache: Any = None) -> list[str]:
        """Greedy completions of one batch; with a prefix ``cache`` the rows continue from a copy of it."""
        import torch
        from transformers import StoppingCriteriaList

        extra: dict[str, Any] = {}
        if cache is not None:  # after a shared prefix: rows of equal length (see _batches), no padding
            batch = {"input_ids": torch.tensor(ids, device=self.model.device)}
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            extra["past_key_values"] = rows_of_cache(cache, len(ids))
        else:
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.model.device)
        width = batch["input_ids"].shape[1]
        stop = StoppingCriteriaList([AnswerStop(self.tokenizer, width)]) if self.fast else None
        with torch.no_grad():
            generated = self.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                stopping_criteria=stop,
                **extra,
            )
        return list(self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))


def shared_prefix(encoded: Sequence[Sequence[int]]) -> list[int]:
    """The token prefix every prompt shares, leaving each at least one token of its own (the model must
    see a new token to generate from); empty when shorter than :data:`MIN_SHARED_PREFIX`."""
    first = encoded[0]
    length = min(len(e) for e in encoded) - 1
    for other in encoded[1:]:
        common = 0
        while common < length and other[common] == first[common]:
            common += 1
        length = common
    return list(first[:length]) if length >= MIN_SHARED_PREFIX else []


def rows_of_cache(cache: Any, rows: int) -> Any:
    """A copy of a one-row cache repeated for ``rows`` rows (generation appends to it in place)."""
    copied = copy.deepcopy(cache)
    if rows > 1:
        copied.batch_repeat_interleave(rows)
    return copied
