"""Constrained decoding for the local backend: JSON-schema grammars and a per-row logits processor.

A small base model does not reliably write valid JSON, so structured requests are decoded under an
xgrammar grammar compiled from the pydantic schema: every finished output parses and validates.

Why a custom processor instead of ``xgrammar.contrib.hf.LogitsProcessor``: one batch mixes rows with
different schemas, rows with no constraint at all (plain text), and rows with different sampling settings
(greedy, temperature, top-p, seed). The contrib processor needs a grammar for every row and leaves
sampling to ``generate``, which applies one temperature/top-p to the whole batch. :class:`RowProcessor`
follows the contrib processor's matcher logic (one ``GrammarMatcher`` per row, accept the last token,
fill the row's bitmask) for constrained rows only, and then does per-row sampling itself: a sampled row's
logits become one-hot on the drawn token, so ``generate`` runs greedy and picks exactly that token.
Masking happens before temperature/top-p, so top-p never removes every allowed token.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import transformers
import xgrammar as xgr
from pydantic import BaseModel

#: Bounds added to this backend's own grammar (roles' schemas stay unbounded for other backends):
#: unbounded strings and arrays let a weak model ramble until the token budget runs out.
DEFAULT_MAX_STRING_LENGTH = 100
DEFAULT_MAX_ITEMS = 8
#: A constrained row may not emit the same token more than this many times in a row. The base model
#: falls into loops like ``"1000000000…"`` (one token per digit) that run a string to its length bound;
#: in JSON such runs are never wanted, and cutting them saves the truncation retry.
MAX_REPEAT = 6

_NON_FREE_STRING_KEYS = ("enum", "const", "pattern", "format")

#: ``json_output=True`` (any JSON object). Not xgrammar's builtin JSON grammar: that one allows free
#: whitespace and unbounded strings, and the base model rambled into both until the budget ran out.
ANY_JSON_OBJECT: dict[str, Any] = {
    "type": "object",
    "maxProperties": 12,
    "propertyNames": {"maxLength": 40},
    "additionalProperties": {"$ref": "#/$defs/value"},
    "$defs": {
        "value": {
            "anyOf": [
                {"type": "string"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
                {"type": "array", "items": {"$ref": "#/$defs/value"}},
                {"type": "object", "maxProperties": 12, "additionalProperties": {"$ref": "#/$defs/value"}},
            ]
        }
    },
}


def bound_schema(
    schema: dict[str, Any],
    *,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> dict[str, Any]:
    """Return a copy of ``schema`` where free strings get ``maxLength`` and arrays get ``maxItems``.

    Existing bounds are tightened to ours (a shorter output still validates), never below a minimum.
    Walks nested objects, ``$defs``, ``items``, ``anyOf`` etc. (any dict inside the schema).
    """
    out = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        types = node.get("type")
        type_set = set(types) if isinstance(types, list) else {types}
        if "string" in type_set and not any(k in node for k in _NON_FREE_STRING_KEYS):
            bound = max(max_string_length, int(node.get("minLength", 0)))
            node["maxLength"] = min(int(node.get("maxLength", bound)), bound)
        if "array" in type_set:
            bound = max(max_items, int(node.get("minItems", 0)))
            node["maxItems"] = min(int(node.get("maxItems", bound)), bound)
        for key, value in node.items():
            if key not in ("enum", "const", "default", "examples"):
                visit(value)

    visit(out)
    return out


def schema_of(json_output: bool | type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The JSON schema a ``json_output`` argument asks for (``True``: any JSON object)."""
    if json_output is True:
        return ANY_JSON_OBJECT
    if isinstance(json_output, dict):
        return json_output
    if isinstance(json_output, type) and issubclass(json_output, BaseModel):
        return json_output.model_json_schema()
    raise TypeError(
        f"json_output must be True, a pydantic model class or a JSON-schema dict, got {json_output!r}"
    )


class GrammarCache:
    """Compiles grammars once per schema and keeps them in memory (thread-safe).

    Keyed by the bounded schema's JSON, unsorted: property order is the order fields are generated in.
    No disk cache: a serialized grammar for this 262k-token vocabulary is ~10 MB and takes 0.2 s to
    load, against 0.05-2 s to compile (measured), so it does not pay.
    """

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        *,
        stop_token_ids: Sequence[int] | None = None,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids) if stop_token_ids else None
        )
        self.tokenizer_info = info
        self.vocab_size = vocab_size
        self.max_string_length = max_string_length
        self.max_items = max_items
        self._compiler = xgr.GrammarCompiler(info)
        self.banned_ids = banned_token_ids(tokenizer, info, keep=stop_token_ids or ())
        self._grammars: dict[str, xgr.CompiledGrammar] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def key(self, json_output: bool | type[BaseModel] | dict[str, Any]) -> str:
        schema = schema_of(json_output)
        bounded = bound_schema(schema, max_string_length=self.max_string_length, max_items=self.max_items)
        return json.dumps(bounded, separators=(",", ":"))  # key order = field order: keep it

    def get(self, json_output: bool | type[BaseModel] | dict[str, Any]) -> xgr.CompiledGrammar:
        """The compiled grammar for ``json_output``; compiles it on first use (may take seconds)."""
        key = self.key(json_output)
        with self._guard:
            grammar = self._grammars.get(key)
            if grammar is not None:
                return grammar
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one compile per schema even when many rows ask at once
            grammar = self._grammars.get(key)
            if grammar is None:
                try:
                    grammar = self._compiler.compile_json_schema(key, any_whitespace=False)
                except Exception as exc:
                    name = getattr(json_output, "__name__", "the requested schema")
                    raise ValueError(
                        f"xgrammar cannot compile the JSON schema of {name} for constrained decoding: {exc}; "
                        "simplify the schema (plain types, enums, nested models and lists work)"
                    ) from exc
                with self._guard:
                    self._grammars[key] = grammar
        return grammar


def banned_token_ids(tokenizer: Any, info: xgr.TokenizerInfo, keep: Sequence[int] = ()) -> torch.Tensor:
    """Token ids a constrained row must never emit, although xgrammar 0.2.8 allows them inside strings.

    * Raw control characters (bytes < 0x20: tab, byte-fallback ``<0x13>``...): JSON forbids them unescaped
      in strings, so ``json.loads`` and pydantic reject the output.
    * Special/added tokens (``<pad>``, ``<start_of_turn>``, ``<unused0>``...): xgrammar sees their literal
      text as string content, but decoding drops them, so the checked text is not the returned text.

    ``keep`` (the stop tokens) stays allowed. Outside strings nothing is lost: the grammar uses no
    whitespace but spaces (``any_whitespace=False``).
    """
    keep_set = set(keep)
    banned = {i for i, raw in enumerate(info.decoded_vocab) if any(b < 0x20 for b in raw)}
    banned.update(int(i) for i in getattr(tokenizer, "all_special_ids", []))
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    banned.update(int(i) for i, tok in added.items() if getattr(tok, "special", False))
    return torch.tensor(sorted(i for i in banned - keep_set if i < info.vocab_size), dtype=torch.long)


@dataclass
class RowControl:
    """Per-row decoding settings and state shared between the processor and the stopping criterion."""

    grammar: xgr.CompiledGrammar | None
    temperature: float
    top_p: float
    generator: torch.Generator | None
    max_tokens: int
    stop: tuple[str, ...] = ()
    done: bool = False
    #: Tokens generated when the row ended (including its EOS), and why it ended.
    length: int | None = None
    finish: Literal["stop", "length"] = "length"
    matcher: xgr.GrammarMatcher | None = field(default=None, repr=False)


class RowProcessor(transformers.LogitsProcessor):
    """Grammar masks for constrained rows, then per-row greedy or temperature/top-p sampling.

    Use with ``generate(do_sample=False)``. One instance per ``generate`` call (matchers keep state).
    """

    def __init__(
        self, rows: Sequence[RowControl], vocab_size: int, banned_ids: torch.Tensor | None = None
    ) -> None:
        self.rows = list(rows)
        self.vocab_size = vocab_size
        self.banned_ids = banned_ids
        self._started = False
        self._bitmask: torch.Tensor | None = None
        for row in self.rows:
            row.matcher = xgr.GrammarMatcher(row.grammar) if row.grammar is not None else None
        if any(row.matcher is not None for row in self.rows):
            self._bitmask = xgr.allocate_token_bitmask(len(self.rows), vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.rows):
            raise RuntimeError(
                f"batch has {input_ids.shape[0]} rows, processor was built for {len(self.rows)}"
            )
        masked: list[int] = []
        for i, row in enumerate(self.rows):
            if row.done or row.matcher is None:
                continue
            if self._started and not row.matcher.is_terminated():
                token = int(input_ids[i, -1])
                if not row.matcher.accept_token(token):
                    raise RuntimeError(f"grammar rejected token {token} in row {i}; this is a bug")
            if not row.matcher.is_terminated():
                assert self._bitmask is not None
                row.matcher.fill_next_token_bitmask(self._bitmask, i)
                masked.append(i)
        self._started = True
        if masked:
            assert self._bitmask is not None
            xgr.apply_token_bitmask_inplace(scores, self._bitmask, vocab_size=self.vocab_size, indices=masked)
            for i in masked:
                self._ban(scores, i, self.banned_ids)
                if input_ids.shape[1] >= MAX_REPEAT:
                    last = input_ids[i, -MAX_REPEAT:]
                    if bool((last == last[-1]).all()):  # "1000000000..." loop: force a different token
                        self._ban(scores, i, last[-1:])
        for i, row in enumerate(self.rows):
            if row.done or row.temperature <= 0:
                continue
            token = sample_token(scores[i], row.temperature, row.top_p, row.generator)
            chosen = scores[i, token].clone()
            scores[i].fill_(float("-inf"))
            scores[i, token] = chosen if torch.isfinite(chosen) else 0.0
        return scores

    @staticmethod
    def _ban(scores: torch.Tensor, row: int, ids: torch.Tensor | None) -> None:
        """Mask ``ids`` in ``row`` unless that leaves no allowed token (then the grammar wins)."""
        if ids is None or not len(ids):
            return
        kept = scores[row, ids].clone()
        scores[row, ids] = float("-inf")
        if not torch.isfinite(scores[row]).any():
            scores[row, ids] = kept


class RowStopper(transformers.StoppingCriteria):
    """Ends each row on its own: EOS, its own token budget, or one of its stop strings.

    Marks rows ``done`` (the processor then leaves them alone) and records ``length``/``finish``.
    """

    def __init__(
        self, rows: Sequence[RowControl], prompt_len: int, eos: set[int], decode: Callable[[Any], str]
    ) -> None:
        self.rows = list(rows)
        self.prompt_len = prompt_len
        self.eos = eos
        self.decode = decode

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        n = input_ids.shape[1] - self.prompt_len
        for i, row in enumerate(self.rows):
            if row.done:
                continue
            finish: Literal["stop", "length"] | None = None
            if int(input_ids[i, -1]) in self.eos:
                finish = "stop"
            elif row.stop:
                # every token decodes to >= 1 char except specials: a short tail holds any new stop match
                tail = max(self.prompt_len, input_ids.shape[1] - max(len(s) for s in row.stop) - 8)
                text = self.decode(input_ids[i, tail:])
                if any(s in text for s in row.stop):
                    finish = "stop"
            if finish is None and n >= row.max_tokens:
                finish = "length"
            if finish is not None:
                row.done, row.length, row.finish = True, n, finish
        done = [row.done for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def sample_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    """Draw one token id from ``softmax(logits / temperature)`` restricted to the top-p nucleus."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=generator))
    # Sorting all 262k entries every step is slow; the nucleus almost always lies in the top 1024.
    k = min(1024, probs.shape[-1])
    top_probs, top_ids = torch.topk(probs, k)
    if float(top_probs.sum()) < top_p and k < probs.shape[-1]:
        top_probs, top_ids = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(top_probs, dim=-1)
    keep = cumulative - top_probs < top_p  # always keeps the most likely token
    pick = torch.multinomial(top_probs * keep, 1, generator=generator)
    return int(top_ids[pick])
