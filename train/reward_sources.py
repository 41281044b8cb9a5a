"""Reward sources for ``synth train grpo`` (and ``ppo``): rules, a judge role, a trained reward model.

Each configured source becomes one TRL reward function; GRPO adds them up with the configured weights
(``GRPOConfig.reward_weights``):

* ``exact_match`` / ``f1``: the completion's answer (a JSON ``answer`` field, else its first line — the
  same extraction and SQuAD normalisation ``synth eval qa`` scores with) against the row's gold answers
  (the ``answers`` column of an ``rl`` export), 0..1.
* ``judge``: a synth :class:`~synth.role.Role` (``roles.reward.REWARD_JUDGE``) on any model spec scores
  each completion 0-10 in its structured output; the reward is ``score / 10``. It is an async function:
  TRL runs it on its own event loop, calls in parallel up to ``max_concurrency``. A call that fails
  (after the client's retries, and the role's one repair turn) gives ``None``: TRL counts it as
  missing (NaN, left out of the weighted sum) and the failures are logged as ``judge/failed``.
* ``model``: a sequence-classification model from ``synth train reward`` (run folder, merged model or
  adapter), scored by TRL on the chat-rendered prompt + completion.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from train.config import RewardSource
from train.errors import TrainError
from train.qa import exact_match, extract_answer, f1_score

METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {"exact_match": exact_match, "f1": f1_score}


def message_text(value: Any) -> str:
    """A prompt or completion as text: the last message's content when it is a chat message list."""
    if isinstance(value, list):
        return str(value[-1]["content"]) if value else ""
    return str(value)


def gold_list(value: Any) -> list[str]:
    """Gold answers as a list of strings (a single string is one answer)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class RuleReward:
    """Exact match or token F1 against the row's gold answers; ``None`` for a row without any."""

    def __init__(self, kind: str, answers_field: str = "answers") -> None:
        self.metric = METRICS[kind]
        self.answers_field = answers_field
        self.__name__ = kind

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        if self.answers_field not in columns:
            raise TrainError(
                f"the {self.__name__} reward needs gold answers in a '{self.answers_field}' column; "
                f"the dataset has {sorted(k for k in columns if k not in _TRL_KWARGS)}. Export with "
                "`synth export RUN -f rl` or set answers_field: to the column that holds them"
            )
        rewards: list[float | None] = []
        for completion, gold in zip(completions, columns[self.answers_field], strict=True):
            answers = gold_list(gold)
            rewards.append(
                self.metric(extract_answer(message_text(completion)), answers) if answers else None
            )
        return rewards


#: Keyword arguments TRL adds to every reward call besides the dataset columns.
_TRL_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


class JudgeReward:
    """An LLM judge role as an async GRPO reward: ``score / 10`` per completion, ``None`` when it fails."""

    def __init__(self, source: RewardSource) -> None:
        assert source.model is not None
        self.source = source
        self.__name__ = "judge"
        self._client: Any = None

    def _ensure_client(self) -> Any:
        """The managed client, created on first use inside the loop that runs the calls (TRL's own)."""
        if self._client is None:
            from synth.models import ClientOptions, make_client

            options = ClientOptions(
                max_concurrency=self.source.max_concurrency,
                timeout_s=self.source.timeout_s,
                max_retries=self.source.retries,
                api_key_env=self.source.api_key_env,
            )
            assert self.source.model is not None
            self._client = make_client(self.source.model, options)
        return self._client

    async def aclose(self) -> None:
        """Close the judge's client and its connection pool; call it in the loop that made the calls."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def score(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        answers: Sequence[Any] | None = None,
        rubrics: Sequence[str | None] | None = None,
    ) -> list[float | None]:
        """Judge every (prompt, completion) concurrently; the reward of a failed judgement is None."""
        from roles.reward import MAX_SCORE, REWARD_JUDGE

        client = self._ensure_client()
        rows = len(completions)
        gold = answers if answers is not None else [None] * rows
        rubric = rubrics if rubrics is not None else [None] * rows
        steps = await asyncio.gather(
            *(
                REWARD_JUDGE.run(
                    client,
                    question=message_text(prompt),
                    response=message_text(completion),
                    answers=gold_list(answer),
                    rubric=row_rubric or self.source.rubric,
                )
                for prompt, completion, answer, row_rubric in zip(
                    prompts, completions, gold, rubric, strict=True
                )
            )
        )
        return [step.output["score"] / MAX_SCORE if step.ok and step.output else None for step in steps]

    async def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        rewards = await self.score(
            prompts, completions, columns.get(self.source.answers_field), columns.get("rubric")
        )
        log_metric = columns.get("log_metric")
        if log_metric is not None:
            log_metric("judge/failed", float(sum(r is None for r in rewards)))
        return rewards


# -- reward models ---------------------------------------------------------------------------------------
def reward_model_folder(path: str) -> Path:
    """The model folder of a reward run (merged/, model/ or adapter/), or ``path`` itself."""
    root = Path(path).expanduser()
    if not root.exists():
        raise TrainError(
            f"reward model {path} does not exist; train one with `synth train reward ... -o {path}`"
        )
    for name in ("merged", "model", "adapter"):
        if (root / name).is_dir() and (root / "config.yaml").is_file():
            return root / name
    return root


def load_reward_model(path: str, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a ``synth train reward`` result, frozen, in eval mode.

    A LoRA adapter is loaded on its base (``base_model_name_or_path``) with a one-label head and merged;
    a full folder must be a sequence-classification model, not a causal LM (whose head would be random).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from train.model_setup import load_tokenizer

    folder = reward_model_folder(path)
    adapter_file = folder / "adapter_config.json"
    if adapter_file.is_file() and not (folder / "config.json").is_file():
        from peft import PeftModel

        base = json.loads(adapter_file.read_text(encoding="utf-8"))["base_model_name_or_path"]
        net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
        model = PeftModel.from_pretrained(net, str(folder)).merge_and_unload()
    else:
        architectures = AutoConfig.from_pretrained(str(folder)).architectures or []
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise TrainError(
                f"{folder} is not a reward model (architectures {architectures}); train one with "
                "`synth train reward` and pass its run folder"
            )
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, dtype=dtype)
    tokenizer = load_tokenizer(str(folder))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval().requires_grad_(False)
    return model, tokenizer


def build_reward_funcs(sources: Sequence[RewardSource]) -> tuple[list[Any], list[Any], list[float]]:
    """(reward functions, their processing classes, weights) in the order GRPOTrainer takes them."""
    funcs: list[Any] = []
    tokenizers: list[Any] = []
    for source in sources:
        if source.kind == "model":
            assert source.model is not None
            model, tokenizer = load_reward_model(source.model)
            funcs.append(model)
            tokenizers.append(tokenizer)
        elif source.kind == "judge":
            funcs.append(JudgeReward(source))
            tokenizers.append(None)
        else:
            funcs.append(RuleReward(source.kind, source.answers_field))
            tokenizers.append(None)
    return funcs, tokenizers, [source.weight for source in sources]
