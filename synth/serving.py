"""A model folder that OpenAI-compatible servers (``transformers serve``, vLLM) can load as is.

Base models such as the embedded Gemma 3 270M ship without a chat template, and servers refuse a chat
request without one. :func:`serve_folder` links every file of a model folder into a new folder and
writes the project's plain-text template (:data:`synth.chat_template.PLAIN_CHAT_TEMPLATE`) beside them
as ``chat_template.jinja``, which ``transformers`` picks up: the server then prompts the model exactly as
the local backend, training and evaluation do. The template's turn ends where the next section header
starts (a base model does not emit EOS there), so the folder's ``generation_config.json`` (a copy, not a
link) also stops generation at :data:`synth.chat_template.SECTION_STOP` (``stop_strings``, which
``transformers serve`` honours). The server returns the stop string with the reply; pass the same
``--sampling stop=...`` and synth cuts it off. The original folder is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from synth.chat_template import PLAIN_CHAT_TEMPLATE, SECTION_STOP
from synth.errors import SynthError

TEMPLATE_FILE = "chat_template.jinja"
GENERATION_FILE = "generation_config.json"


def has_chat_template(folder: Path) -> bool:
    """Whether the folder's tokenizer already carries a chat template (file or tokenizer_config key)."""
    if (folder / TEMPLATE_FILE).is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and '"chat_template"' in config.read_text(encoding="utf-8")


def serve_folder(model_folder: Path | str, out: Path | str) -> Path:
    """``out`` holding links to ``model_folder``'s files plus a chat template if it has none; returns it."""
    source, target = Path(model_folder).expanduser().resolve(), Path(out).expanduser()
    if not (source / "config.json").is_file():
        raise SynthError(f"{source} is not a Hugging Face model folder (no config.json)")
    if target.resolve() == source:
        raise SynthError("the serving folder must differ from the model folder (it is never modified)")
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        link = target / item.name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        os.symlink(item, link)
    if not has_chat_template(source):
        (target / TEMPLATE_FILE).write_text(PLAIN_CHAT_TEMPLATE, encoding="utf-8")
        _stop_at_sections(source, target)
    return target


def _stop_at_sections(source: Path, target: Path) -> None:
    """The source's generation config plus ``stop_strings`` ending a reply at the next section header."""
    config_file = source / GENERATION_FILE
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    stops = config.get("stop_strings") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    config["stop_strings"] = [*stops, SECTION_STOP] if SECTION_STOP not in stops else stops
    link = target / GENERATION_FILE
    if link.is_symlink() or link.exists():
        link.unlink()
    link.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
