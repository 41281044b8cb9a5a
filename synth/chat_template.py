"""The project's plain-text chat template, for models whose tokenizer has none.

Base models (like the embedded Gemma 3 270M) ship without a chat template, and their own instruction
formats do not help them: they continue plain text well, so prompts are rendered as plain text sections.
This one template is shared by the local backend (generation and log-probabilities), by training
(TRL SFT with ``assistant_only_loss=True``) and by evaluation, so a model is trained on exactly the format
it is prompted with.

Format (``<bos>``/``<eos>`` are the tokenizer's own BOS/EOS tokens; BOS is omitted if it has none)::

    <bos>### System
    You are terse.

    ### User
    Name a colour.

    ### Assistant
    Red.<eos>

    ### Tool
    {"result": 42}

    ### Intent Reconstructor
    {"intent": "..."}<eos>

Rules:

* each message is a section: ``### <Header>\\n<content>\\n\\n``;
* the header is the role, underscores turned to spaces and title-cased (``system`` -> ``System``,
  ``tool`` -> ``Tool``, ``retrieval`` -> ``Retrieval``); a message's optional ``name`` key replaces it
  (``{"role": "assistant", "name": "Intent Reconstructor", ...}`` -> ``### Intent Reconstructor``);
* assistant content is followed by the EOS token, which is the end-of-turn marker: generation stops at
  EOS. Assistant content plus EOS are wrapped in ``{% generation %}`` so TRL's ``assistant_only_loss``
  (and ``return_assistant_tokens_mask``) trains on exactly those tokens, never on headers;
* the generation prompt is ``### Assistant\\n``, or ``### <assistant_header>\\n`` when the template
  variable ``assistant_header`` is given (so a named role is prompted with its own header). The prompt ends
  with a newline, so a JSON answer starts on a token boundary;
* content may be a string or a list of ``{"type": "text", "text": ...}`` parts (other parts are dropped).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from autogen_core import FunctionCall, Image
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)

#: Where the template's next section starts. Plain-text replies stop there: a base model never learned to
#: emit EOS after a reply and goes on with ``\n\n### User``/``### Assistant`` sections.
SECTION_STOP = "\n### "

PLAIN_CHAT_TEMPLATE = (
    "{%- if bos_token is defined and bos_token %}{{ bos_token }}{% endif -%}"
    "{%- set eot = eos_token if (eos_token is defined and eos_token) else '' -%}"
    "{%- for message in messages -%}"
    "{%- if message.name is defined and message.name -%}{%- set header = message.name -%}"
    "{%- else -%}{%- set header = message.role | replace('_', ' ') | title -%}{%- endif -%}"
    "{%- if message.content is string -%}{%- set content = message.content -%}"
    "{%- elif message.content is none or message.content is not defined -%}{%- set content = '' -%}"
    "{%- else -%}{%- set ns = namespace(text='') -%}"
    "{%- for part in message.content -%}"
    "{%- if part.type is defined and part.type == 'text' -%}"
    "{%- set ns.text = ns.text + part.text -%}"
    "{%- endif -%}"
    "{%- endfor -%}{%- set content = ns.text -%}{%- endif -%}"
    "{{ '### ' + header + '\n' }}"
    "{%- if message.role == 'assistant' -%}"
    "{% generation %}{{ content + eot }}{% endgeneration %}{{ '\n\n' }}"
    "{%- else -%}{{ content + '\n\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if assistant_header is defined and assistant_header -%}{{ '### ' + assistant_header + '\n' }}"
    "{%- else -%}{{ '### Assistant\n' }}{%- endif -%}"
    "{%- endif -%}"
)


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give ``tokenizer`` the plain template if it has no chat template; return the same tokenizer."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return tokenizer


def render_prompt(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    *,
    assistant_header: str | None = None,
) -> str:
    """Render ``messages`` with the tokenizer's chat template (ours if it has none) as one string.

    The string already contains BOS: tokenize it with ``add_special_tokens=False``.
    """
    ensure_chat_template(tokenizer)
    extra: dict[str, Any] = {"assistant_header": assistant_header} if assistant_header else {}
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt, **extra
    )
    return str(text)


def _text_of(content: str | Sequence[Any], what: str) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Image):
            raise ValueError(
                f"{what} contains an image, but this model is text-only; "
                "drop the image or use a vision backend"
            )
        else:
            parts.append(str(part))
    return "\n".join(parts)


def _calls_text(calls: Sequence[FunctionCall]) -> str:
    return json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


def messages_to_dicts(messages: Sequence[LLMMessage]) -> list[dict[str, str]]:
    """Convert AutoGen messages to ``{"role", "content"}`` dicts for :data:`PLAIN_CHAT_TEMPLATE`.

    ``SystemMessage`` -> ``system``, ``UserMessage`` -> ``user``, ``AssistantMessage`` -> ``assistant``
    (function calls rendered as JSON text), ``FunctionExecutionResultMessage`` -> ``tool``. AutoGen's
    ``source`` is an agent id, not a display header, so it is not used as ``name``.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": message.content})
        elif isinstance(message, UserMessage):
            out.append({"role": "user", "content": _text_of(message.content, "a user message")})
        elif isinstance(message, AssistantMessage):
            content = message.content
            text = content if isinstance(content, str) else _calls_text(content)
            out.append({"role": "assistant", "content": text})
        elif isinstance(message, FunctionExecutionResultMessage):
            out.append({"role": "tool", "content": "\n".join(r.content for r in message.content)})
        else:  # pragma: no cover - LLMMessage is a closed union today
            raise TypeError(f"unsupported message type {type(message).__name__}")
    return out
