"""Shared pieces of every training command: hardware and precision, the base model, tokenizer, LoRA, and
the TRL arguments built from a config.

Heavy libraries (torch, transformers, peft, trl) are imported inside functions, so validating a config or
printing ``--help`` never pays for them.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from train.errors import TrainError

if TYPE_CHECKING:
    from train.config import CommonSettings

Resolved = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class Hardware:
    """What this process trains on: ``cuda`` (``gpus`` visible) or ``cpu``; ``bf16``: native bf16 support
    (the GPU's, or the CPU's AMX / avx512_bf16 units)."""

    device: Literal["cuda", "cpu"]
    gpus: int
    bf16: bool
    name: str

    def describe(self) -> str:
        if self.device == "cuda":
            return f"cuda x{self.gpus} ({self.name}{', bf16' if self.bf16 else ''})"
        return f"cpu ({self.name}{', bf16 units' if self.bf16 else ''})"


def detect_hardware(requested: str = "auto") -> Hardware:
    """The device to train on; ``cuda`` without a visible GPU is an error, not a silent CPU run."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise TrainError(
            "device: cuda was asked for, but torch sees no GPU (torch.cuda.is_available() is False); "
            "use device: auto (or cpu), or install a CUDA build of torch"
        )
    if has_cuda and requested != "cpu":
        return Hardware(
            "cuda", torch.cuda.device_count(), torch.cuda.is_bf16_supported(), torch.cuda.get_device_name(0)
        )
    from synth.models.local.hardware import cpu_supports_bf16

    return Hardware("cpu", 0, cpu_supports_bf16(), platform.processor() or platform.machine() or "cpu")


def resolve_precision(requested: str, hardware: Hardware) -> Resolved:
    """``auto``: bf16 on GPUs that have it, fp16 on other GPUs; on a CPU, bf16 when it has native bf16 units
    (AMX / avx512_bf16: several times faster matmuls, and Gemma-3's own training precision), else fp32
    (emulated bf16 is slower than fp32)."""
    if requested == "auto":
        if hardware.device == "cuda":
            return "bf16" if hardware.bf16 else "fp16"
        return "bf16" if hardware.bf16 else "fp32"
    if requested == "fp16" and hardware.device == "cpu":
        raise TrainError(
            "precision: fp16 needs a GPU (the Trainer has no fp16 mixed precision on CPU); use fp32 or bf16"
        )
    if requested == "bf16" and hardware.device == "cuda" and not hardware.bf16:
        raise TrainError(f"precision: bf16 is not supported by {hardware.name}; use fp16 or precision: auto")
    return requested  # type: ignore[return-value]


def torch_dtype(precision: Resolved, tuning: str) -> Any:
    """The dtype the base weights load in.

    Full fine-tuning keeps fp32 master weights under mixed precision (half-precision weights cannot be
    unscaled/updated safely); LoRA loads the frozen base in half precision to halve its memory.
    """
    import torch

    if precision == "fp32" or tuning == "full":
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def check_tuning(settings: CommonSettings, hardware: Hardware) -> None:
    """QLoRA needs bitsandbytes and a GPU; say so before anything loads."""
    if settings.tuning != "qlora":
        return
    if hardware.device != "cuda":
        raise TrainError("tuning: qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use tuning: lora")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainError("tuning: qlora needs bitsandbytes: pip install bitsandbytes (or use tuning: lora)")


def check_report_to(settings: CommonSettings) -> None:
    """A logger that is not installed fails at step 0 deep inside the Trainer; fail here instead."""
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(settings.report_to)
    if package and importlib.util.find_spec(package) is None:
        raise TrainError(
            f"report_to: {settings.report_to} needs {package}: pip install {package} (or report_to: none)"
        )


# -- model and tokenizer ---------------------------------------------------------------------------------
def resolve_model(spec: str) -> str:
    """A loadable model reference: a local folder (built-in names are converted once) or a hub id.

    ``local:NAME`` is accepted so that the spec used to generate data also names the model to train.
    """
    from synth.models.local.convert import BUILTIN_MODELS, model_path

    name = spec.removeprefix("local:")
    path = Path(name).expanduser()
    if name in BUILTIN_MODELS:
        return str(model_path(name))
    if path.exists():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            raise TrainError(
                f"model {spec} is a LoRA adapter, not a full model; train from the merged model instead "
                "(a run with merge: true writes OUTPUT_DIR/merged) or merge it first"
            )
        if (path / "merged" / "config.json").is_file() and not (path / "config.json").is_file():
            return str((path / "merged").resolve())  # a synth train run folder
        return str(model_path(str(path)))
    if name.startswith((".", "/", "~")):
        raise TrainError(f"model folder {path} does not exist; point model: at a folder with config.json")
    return name  # a hub id: transformers downloads it (or fails clearly when offline)


def load_tokenizer(model: str) -> Any:
    """The model's tokenizer with the project's plain chat template when it has none, and a pad token."""
    from transformers import AutoTokenizer

    from synth.chat_template import ensure_chat_template

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise TrainError(
            f"cannot load a tokenizer from {model}: {exc}. Use a model folder with tokenizer files, the "
            "built-in "
            "gemma-3-270m, or a hub id while online"
        ) from exc
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_init_kwargs(settings: CommonSettings, precision: Resolved) -> dict[str, Any]:
    """What TRL passes to ``from_pretrained`` when it loads the model from its path."""
    return {"dtype": torch_dtype(precision, settings.tuning)}


def quantization_config(settings: CommonSettings, precision: Resolved) -> Any:
    """4-bit NF4 (double quantised) for QLoRA; computations in the run's half precision."""
    if settings.tuning != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    compute = (
        torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else torch.float32
    )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def lora_config(settings: CommonSettings, task_type: str = "CAUSAL_LM") -> Any:
    """The PEFT config for ``tuning: lora|qlora``; None for full fine-tuning.

    ``task_type="SEQ_CLS"`` (reward models) also trains and saves the new score head with the adapter.
    """
    if settings.tuning == "full":
        return None
    from peft import LoraConfig

    lora = settings.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        bias=lora.bias,
        task_type=task_type,
    )


def count_parameters(model: str, settings: CommonSettings, head: str = "causal") -> tuple[int, int] | None:
    """(trainable, total) parameters, computed on an empty (meta) model: a dry run allocates no weights.

    ``head="score"``: the sequence-classification (reward) model. None when the model's config cannot be
    read (a hub id while offline).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        return None
    if head == "score":
        config.num_labels = 1
    auto = AutoModelForSequenceClassification if head == "score" else AutoModelForCausalLM
    with torch.device("meta"):  # (accelerate's init_empty_weights would leave tied embeddings untied)
        net = auto.from_config(config)
    total = sum(p.numel() for p in net.parameters())
    peft = lora_config(settings, "SEQ_CLS" if head == "score" else "CAUSAL_LM")
    if peft is None:
        return total, total
    from peft import get_peft_model

    wrapped = get_peft_model(net, peft)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return trainable, total


# -- TRL arguments ---------------------------------------------------------------------------------------
def trainer_arguments(
    settings: CommonSettings, hardware: Hardware, precision: Resolved, checkpoints: Path
) -> dict[str, Any]:
    """The keyword arguments shared by ``SFTConfig`` and ``DPOConfig``."""
    warmup: float = settings.warmup if settings.warmup < 1 else int(settings.warmup)
    return {
        "output_dir": str(checkpoints),
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": warmup,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "report_to": [] if settings.report_to == "none" else [settings.report_to],
        "run_name": Path(settings.output_dir).name,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": hardware.device == "cpu",
        "activation_checkpointing": settings.gradient_checkpointing,
        "max_length": settings.max_length,
        "padding_free": settings.padding_free,
        "model_init_kwargs": model_init_kwargs(settings, precision),
        "disable_tqdm": True,
    }
