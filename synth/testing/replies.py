"""What the loopback OpenAI double answers: responders, scripted replies, and response bodies.

A *responder* is ``(request_json: dict) -> str | dict | Reply``. It sees the decoded request body exactly
as the client sent it (``messages``/``prompt``, ``response_format``, ``logprobs`` ...). A ``str`` is the
reply content; a ``dict`` takes the fields of :class:`Reply` (``content`` may be a dict/list, which is
JSON-encoded). A responder may also script a fault for one request (``{"fault": "500"}``) or any HTTP
error (``{"status": 400, "error": "bad"}``) so a test can fail exactly the rows it wants.

Tokens are whitespace-separated words: a rough count, enough for usage accounting and ``max_tokens``.
Log-probabilities default to a deterministic function of each token, or come from the responder.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from threading import Lock
from typing import Any

#: Bodies a broken proxy or backend sends with HTTP 200 instead of a completion (see :data:`GARBAGE_BODIES`).
GARBAGE_KINDS = ("empty", "html", "no_choices", "error_200")
FAULT_KINDS = ("500", "429", "hang", "malformed", "reset", "drip", *GARBAGE_KINDS)

#: ``kind -> (content type, body)`` of each garbage-200 fault.
GARBAGE_BODIES: dict[str, tuple[str, bytes]] = {
    "empty": ("application/json", b""),
    "html": ("text/html; charset=utf-8", b"<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"),
    "no_choices": ("application/json", b'{"id": "chatcmpl-0", "object": "chat.completion", "model": "m"}'),
    "error_200": (
        "application/json",
        b'{"error": {"message": "upstream worker crashed", "type": "server_error", "code": null}}',
    ),
}


@dataclass
class Reply:
    """One scripted answer. ``logprobs``/``prompt_logprobs`` are ``[(token, logprob), ...]``."""

    content: str | None = ""
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[tuple[str, float]] | None = None
    prompt_logprobs: list[tuple[str, float]] | None = None
    usage: dict[str, int] | None = None
    latency_ms: float | None = None
    fault: str | None = None
    status: int | None = None
    error: str | None = None


ReplyLike = str | dict[str, Any] | Reply
Responder = Callable[[dict[str, Any]], ReplyLike]

_REPLY_FIELDS = {f.name for f in fields(Reply)}


def to_reply(value: Any) -> Reply:
    """Normalise what a responder returned into a :class:`Reply` (raises ``TypeError`` on junk)."""
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, Mapping):
        unknown = set(value) - _REPLY_FIELDS
        if unknown:
            raise TypeError(f"unknown reply fields {sorted(unknown)}; allowed: {sorted(_REPLY_FIELDS)}")
        data = dict(value)
        if isinstance(data.get("content"), dict | list):
            data["content"] = json.dumps(data["content"])
        if data.get("fault") is not None and data["fault"] not in FAULT_KINDS:
            raise TypeError(f"unknown fault {data['fault']!r}; use one of {FAULT_KINDS}")
        return Reply(**data)
    raise TypeError(f"a responder must return str, dict or Reply, not {type(value).__name__}")


# -- reading requests ----------------------------------------------------------------------------------
def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: keep the text parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return ""


def last_user_text(request: Mapping[str, Any]) -> str:
    """Text of the last user message (or the legacy completions ``prompt``)."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return _text(message.get("content"))
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def system_text(request: Mapping[str, Any]) -> str:
    """All system (and developer) messages joined by newlines."""
    return "\n".join(
        _text(m.get("content"))
        for m in request.get("messages") or []
        if m.get("role") in ("system", "developer")
    )


def prompt_text(request: Mapping[str, Any]) -> str:
    """Every message's text joined, or the completions ``prompt``: what prompt tokens are counted on."""
    if "messages" in request:
        return "\n".join(_text(m.get("content")) for m in request.get("messages") or [])
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""


def tokens(text: str | None) -> list[str]:
    return (text or "").split()


# -- responders ----------------------------------------------------------------------------------------
def example_from_schema(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A small value valid for ``schema`` (objects, arrays, enums, refs, anyOf): default JSON replies."""
    root = root if root is not None else schema
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        return example_from_schema((root.get("$defs") or root.get("definitions") or {})[ref], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_from_schema(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: example_from_schema(sub, root) for name, sub in props.items()}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_from_schema(schema.get("items") or {}, root) for _ in range(count)]
    minimum = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    simple: dict[str, Any] = {
        "string": "x" * int(schema.get("minLength", 1)),
        "integer": int(minimum) + 1,
        "number": float(minimum) + 1.0,
        "boolean": True,
        "null": None,
    }
    return simple.get(kind, "x")


def default_responder(request: dict[str, Any]) -> str:
    """Deterministic echo: a schema-valid example for ``json_schema`` requests, else ``echo: <user text>``."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(example_from_schema((fmt.get("json_schema") or {}).get("schema") or {}))
    if fmt.get("type") == "json_object":
        return json.dumps({"echo": last_user_text(request)})
    return f"echo: {last_user_text(request)}"


def constant(reply: ReplyLike) -> Responder:
    """Always the same reply."""
    return lambda _request: reply


def by_substring(
    rules: Mapping[str, ReplyLike] | Iterable[tuple[str, ReplyLike]],
    *,
    where: str = "user",
    default: Responder | ReplyLike | None = None,
) -> Responder:
    """First rule whose substring occurs in the ``where`` text (``user``, ``system`` or ``any`` message).

    Unmatched requests use ``default`` (a responder or a fixed reply); with no default they fail with a
    422 naming the request text, so a missing rule is loud rather than a silent echo.
    """
    pairs = list(rules.items() if isinstance(rules, Mapping) else rules)
    pick = {"user": last_user_text, "system": system_text, "any": prompt_text}[where]

    def respond(request: dict[str, Any]) -> ReplyLike:
        text = pick(request)
        for needle, reply in pairs:
            if needle in text:
                return reply(request) if callable(reply) else reply
        if default is None:
            raise LookupError(f"no scripted reply matches {where} text {text[:200]!r}")
        return default(request) if callable(default) else default

    return respond


class QueueResponder:
    """Replies in order, one per request; then ``then`` (a responder/reply) or a loud 422 when exhausted."""

    def __init__(self, replies: Iterable[ReplyLike], then: Responder | ReplyLike | None = None) -> None:
        self._replies: deque[ReplyLike] = deque(replies)
        self._then = then
        self._lock = Lock()

    @property
    def remaining(self) -> int:
        return len(self._replies)

    def __call__(self, request: dict[str, Any]) -> ReplyLike:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        if self._then is None:
            raise LookupError("the scripted reply queue is exhausted")
        return self._then(request) if callable(self._then) else self._then


def as_responder(
    script: Responder | ReplyLike | Mapping[str, Any] | list[Any],
    *,
    where: str = "user",
    default: Responder | ReplyLike | None = None,
) -> Responder:
    """``callable`` as is; ``list`` -> queue; ``dict`` of substrings -> :func:`by_substring`; else constant.

    A dict that looks like one reply (it has ``content``/``fault``/``status``/``tool_calls``) is constant.
    """
    if callable(script) and not isinstance(script, Reply):
        return script
    if isinstance(script, list):
        return QueueResponder(script, then=default)
    if isinstance(script, Mapping) and not (set(script) & {"content", "fault", "status", "tool_calls"}):
        return by_substring(script, where=where, default=default)
    return constant(script)  # type: ignore[arg-type]


# -- response bodies -----------------------------------------------------------------------------------
def fake_logprob(token: str) -> float:
    """A deterministic stand-in log-probability in (-4.01, -0.01]."""
    return -((zlib.crc32(token.encode()) % 1000) / 250.0 + 0.01)


def token_logprobs(text: str | None, given: list[tuple[str, float]] | None) -> list[tuple[str, float]]:
    return (
        [(t, float(lp)) for t, lp in given]
        if given is not None
        else [(t, fake_logprob(t)) for t in tokens(text)]
    )


def _token_id(token: str) -> int:
    return zlib.crc32(token.encode()) % 50_000


def vllm_prompt_logprobs(pairs: list[tuple[str, float]]) -> list[dict[str, dict[str, Any]] | None]:
    """vLLM's shape: one entry per prompt token, ``None`` first, then ``{token_id: {logprob, rank, ...}}``."""
    out: list[dict[str, dict[str, Any]] | None] = [None] if pairs else []
    out.extend({str(_token_id(t)): {"logprob": lp, "rank": 1, "decoded_token": t}} for t, lp in pairs[1:])
    return out


def split_stream_pieces(text: str) -> list[str]:
    """Word-sized pieces (whitespace kept) for streaming."""
    return [p for p in re.findall(r"\s*\S+|\s+", text)]


def chat_body(request: Mapping[str, Any], reply: Reply, *, index: int, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object for ``reply``, with usage and requested log-probabilities."""
    content, finish = reply.content, reply.finish_reason
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and content and finish is None and len(tokens(content)) > limit:
        content, finish = " ".join(tokens(content)[:limit]), "length"
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reply.tool_calls:
        message["content"] = content or None
        message["tool_calls"] = [
            {
                "id": call.get("id", f"call_{index}_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call["arguments"], str)
                    else json.dumps(call["arguments"]),
                },
            }
            for i, call in enumerate(reply.tool_calls)
        ]
        finish = finish or "tool_calls"
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish or "stop",
        "logprobs": None,
    }
    if request.get("logprobs"):
        top = int(request.get("top_logprobs") or 0)
        choice["logprobs"] = {
            "content": [
                {
                    "token": t,
                    "logprob": lp,
                    "bytes": list(t.encode()),
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}][:top],
                }
                for t, lp in token_logprobs(content, reply.logprobs)
            ]
        }
    body = {
        "id": f"chatcmpl-{index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(request, content, reply),
        "system_fingerprint": None,
    }
    if request.get("prompt_logprobs") is not None or reply.prompt_logprobs is not None:
        pl = vllm_prompt_logprobs(token_logprobs(prompt_text(request), reply.prompt_logprobs))
        choice["prompt_logprobs"] = pl
        body["prompt_logprobs"] = pl
    return body


def completion_body(request: Mapping[str, Any], reply: Reply, *, index: int, model: str) -> dict[str, Any]:
    """A legacy ``text_completion``; ``echo`` + ``logprobs`` give prompt-token scores (OpenAI style)."""
    prompt = prompt_text(request)
    text = reply.content or ""
    echo = bool(request.get("echo"))
    choice: dict[str, Any] = {
        "index": 0,
        "text": (prompt + text) if echo else text,
        "finish_reason": reply.finish_reason or "stop",
        "logprobs": None,
    }
    if request.get("logprobs") is not None:
        pairs = token_logprobs(text, reply.logprobs)
        prompt_pairs = token_logprobs(prompt, reply.prompt_logprobs) if echo else []
        toks = [t for t, _ in prompt_pairs + pairs]
        lps: list[float | None] = [lp for _, lp in prompt_pairs + pairs]
        if echo and lps:
            lps[0] = None  # the first prompt token has no context, as in OpenAI's API
        offsets, pos = [], 0
        for t in toks:
            offsets.append(pos)
            pos += len(t) + 1
        choice["logprobs"] = {
            "tokens": toks,
            "token_logprobs": lps,
            "text_offset": offsets,
            "top_logprobs": [None if lp is None else {t: lp} for t, lp in zip(toks, lps, strict=True)],
        }
    if request.get("prompt_logprobs") is not None:
        choice["prompt_logprobs"] = vllm_prompt_logprobs(token_logprobs(prompt, reply.prompt_logprobs))
    return {
        "id": f"cmpl-{index}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(request, text, reply),
    }


def usage(request: Mapping[str, Any], content: str | None, reply: Reply) -> dict[str, int]:
    prompt_n = len(tokens(prompt_text(request)))
    completion_n = len(tokens(content))
    if reply.usage:
        prompt_n = reply.usage.get("prompt_tokens", prompt_n)
        completion_n = reply.usage.get("completion_tokens", completion_n)
    return {
        "prompt_tokens": prompt_n,
        "completion_tokens": completion_n,
        "total_tokens": prompt_n + completion_n,
    }


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
