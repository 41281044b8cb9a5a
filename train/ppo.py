"""``synth train ppo``: actor-critic PPO with TRL 1.12's ``trl.experimental.ppo.PPOTrainer``.

TRL removed PPO in 1.13, so this command runs only in the second environment (``make venv-ppo``: the
project with the ``ppo`` extra, ``trl==1.12.0``); under current TRL it stops with that instruction.

Models: the policy (LoRA or full; with LoRA the reference is the adapter switched off, otherwise TRL
copies the policy), a critic (``AutoModelForSequenceClassification``, one label, trained in full; its
initial weights come from ``value_model``, by default the reward model, else the policy base) and the
reward: a ``synth train reward`` model, or a rule (exact match / F1 against the row's gold answers).
PPOTrainer scores a rollout by calling the reward model's backbone and ``score`` head, so a rule reward
is wrapped as such a module (:class:`RuleRewardModel`): it decodes each response, finds its prompt's gold
answers by the prompt's token ids, and returns the metric as the score.

TRL 1.12's PPO cannot resume from a checkpoint: no checkpoints are written, an interrupted run starts
again from step 0, and a finished run (``result.json``) is not trained again.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Unpack

from packaging.version import Version

from train.config import PPOSettings
from train.errors import TrainError
from train.job import Job, Plan, RunOptions, execute
from train.model_setup import lora_config, resolve_model, torch_dtype
from train.reward_sources import METRICS, gold_list, load_reward_model
from train.runfolder import RunResult

#: The last TRL release with PPOTrainer.
PPO_TRL = "1.12.0"


class PPOUnavailableError(TrainError):
    """This environment's TRL has no PPOTrainer; the message says how to create the one that has."""


def ppo_unavailable_reason() -> str | None:
    """Why PPO cannot run here (with the exact fix), or None when it can."""
    try:
        version = metadata.version("trl")
    except metadata.PackageNotFoundError:
        version = None
    if version is not None and Version(version) < Version("1.13"):
        return None
    found = f"trl {version}" if version else "no trl"
    return (
        f"`synth train ppo` needs trl=={PPO_TRL}: TRL removed PPOTrainer in 1.13, and this environment has "
        f"{found}. Create the PPO environment (a second venv, .venv-ppo) and run the command from it:\n"
        "  make venv-ppo\n"
        "  .venv-ppo/bin/synth train ppo --model MODEL --data RL_EXPORT -o OUT\n"
        "(make venv-ppo runs: python3.11 -m venv .venv-ppo; .venv-ppo/bin/pip install torch==2.13.0; "
        ".venv-ppo/bin/pip install -e '.[ppo,dev]')"
    )


def require_ppo() -> None:
    reason = ppo_unavailable_reason()
    if reason:
        raise PPOUnavailableError(reason)


# -- rule reward as a reward model -----------------------------------------------------------------------
class _RuleBackbone:
    """Scores whole query+response rows; returns them as the last 'hidden state' (B, T, 1)."""

    def __init__(self, kind: str, tokenizer: Any, queries: dict[tuple[int, ...], list[str]]) -> None:
        self.metric = METRICS[kind]
        self.tokenizer = tokenizer
        self.queries = queries
        self.lengths = sorted({len(q) for q in queries}, reverse=True)

    def gold(self, tokens: list[int]) -> tuple[int, list[str]]:
        """(query length, gold answers) of a row, found by its prompt's token ids."""
        for length in self.lengths:
            answers = self.queries.get(tuple(tokens[:length]))
            if answers is not None:
                return length, answers
        raise TrainError("a PPO rollout starts with no known prompt; the rule reward cannot find its answers")

    def __call__(self, input_ids: Any, attention_mask: Any, **_: Any) -> SimpleNamespace:
        import torch

        from train.qa import extract_answer

        scores = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            tokens = ids[mask.bool()].tolist()
            length, answers = self.gold(tokens)
            text = self.tokenizer.decode(tokens[length:], skip_special_tokens=True)
            scores.append(self.metric(extract_answer(text), answers) if answers else 0.0)
        score = torch.tensor(scores, dtype=torch.float32, device=input_ids.device)
        return SimpleNamespace(hidden_states=(score[:, None, None].expand(-1, input_ids.shape[1], 1),))


def rule_reward_model(kind: str, tokenizer: Any, queries: dict[tuple[int, ...], list[str]]) -> Any:
    """A parameter-free module with the interface PPOTrainer scores with (``backbone`` + ``score``)."""
    from torch import nn

    class RuleRewardModel(nn.Module):
        base_model_prefix = "backbone"

        def __init__(self) -> None:
            super().__init__()
            self.backbone = _RuleBackbone(kind, tokenizer, queries)
            self.score = nn.Identity()

    return RuleRewardModel()


# -- data and models -------------------------------------------------------------------------------------
def tokenize_prompts(dataset: Any, tokenizer: Any, max_length: int) -> tuple[Any, list[tuple[int, ...]]]:
    """``input_ids`` of every prompt (chat-rendered with the generation prompt when conversational),
    left-truncated to ``max_length``; also the ids per row, to find a row's gold answers."""
    from datasets import Dataset

    ids: list[list[int]] = []
    for prompt in dataset["prompt"]:
        if isinstance(prompt, list):
            text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])
        else:
            ids.append(tokenizer(str(prompt))["input_ids"][-max_length:])
    return Dataset.from_dict({"input_ids": ids}), [tuple(row) for row in ids]


def load_value_model(path: str, dtype: Any) -> Any:
    """The critic: a reward run (its model, trainable again) or any model folder with a new one-label head."""
    from transformers import AutoModelForSequenceClassification

    if (Path(path).expanduser() / "config.yaml").is_file():  # a `synth train reward` run folder
        model, _ = load_reward_model(path, dtype)
        return model.train().requires_grad_(True)
    return AutoModelForSequenceClassification.from_pretrained(resolve_model(path), num_labels=1, dtype=dtype)


def _ppo_config(job: Job, settings: PPOSettings) -> Any:
    from trl.experimental.ppo import PPOConfig

    arguments = job.config_arguments(only_fields_of=PPOConfig)
    per_step = settings.batch_size * settings.grad_accum * max(job.hardware.gpus, 1)
    return PPOConfig(
        **{**arguments, "save_strategy": "no"},  # TRL 1.12's PPO cannot resume: no checkpoints
        total_episodes=settings.max_steps * per_step if settings.max_steps > 0 else None,
        response_length=settings.response_length,
        temperature=settings.temperature,
        num_ppo_epochs=settings.num_ppo_epochs,
        num_mini_batches=settings.num_mini_batches,
        kl_coef=settings.kl_coef,
        cliprange=settings.cliprange,
        vf_coef=settings.vf_coef,
        cliprange_value=settings.cliprange_value,
        gamma=settings.gamma,
        lam=settings.lam,
        missing_eos_penalty=settings.missing_eos_penalty,
        stop_token="eos",
        num_sample_generations=0,
        local_rollout_forward_batch_size=settings.batch_size,
    )


class PPORun:
    """PPOTrainer as the runner expects a trainer: ``train()`` returns steps and the last policy loss."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def train(self, resume_from_checkpoint: str | None = None) -> SimpleNamespace:
        self.trainer.train()
        state = self.trainer.state
        losses = [entry["loss/policy_avg"] for entry in state.log_history if "loss/policy_avg" in entry]
        return SimpleNamespace(global_step=state.global_step, training_loss=losses[-1] if losses else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trainer, name)


def build_ppo_trainer(job: Job) -> PPORun:
    """Policy, critic, reward and the tokenized prompts -> TRL 1.12's PPOTrainer."""
    require_ppo()
    from transformers import AutoModelForCausalLM
    from trl.experimental.ppo import PPOTrainer

    settings = job.settings
    assert isinstance(settings, PPOSettings)
    tokenizer = job.tokenizer
    tokenizer.padding_side = "left"  # rollouts generate after the prompt
    dataset, query_ids = tokenize_prompts(job.dataset, tokenizer, settings.max_length)
    source = settings.reward
    if source.kind == "model":
        assert source.model is not None
        reward_model, _ = load_reward_model(source.model)
    else:
        if source.answers_field not in job.dataset.column_names:
            raise TrainError(
                f"reward {source.kind} needs gold answers in a '{source.answers_field}' column of "
                f"{settings.data} (columns: {job.dataset.column_names}); export with `synth export RUN -f rl`"
            )
        golds = [gold_list(g) for g in job.dataset[source.answers_field]]
        reward_model = rule_reward_model(source.kind, tokenizer, dict(zip(query_ids, golds, strict=True)))
    value_path = settings.value_model or (source.model if source.kind == "model" else job.base)
    assert value_path is not None
    dtype = torch_dtype(job.precision, settings.tuning)
    trainer = PPOTrainer(
        args=_ppo_config(job, settings),
        processing_class=tokenizer,
        model=AutoModelForCausalLM.from_pretrained(job.base, dtype=dtype),
        ref_model=None,
        reward_model=reward_model,
        train_dataset=dataset,
        value_model=load_value_model(value_path, torch_dtype(job.precision, "full")),
        callbacks=list(job.callbacks),
        peft_config=lora_config(settings),
    )
    return PPORun(trainer)


def run_ppo(settings: PPOSettings, **options: Unpack[RunOptions]) -> RunResult | Plan:
    """Train (or plan, with ``dry_run``) a PPO run. Needs TRL 1.12 (``make venv-ppo``)."""
    require_ppo()
    return execute("ppo", settings, build_ppo_trainer, **options)
