"""The local inference engine: one worker thread owns the model and runs batched ``generate`` calls.

Why batching: on a 2-core CPU one sequence decodes at ~10 tokens/s, but a batch of 8 costs little more
per step than one row, so concurrent requests (many rows of a dataset, as asyncio tasks) are gathered into
one ``generate``. Requests arrive from any thread or event loop through :meth:`Engine.submit`, which returns
a ``concurrent.futures.Future``; the worker waits a short gather window after the first request, takes up
to ``max_batch_size`` of them, runs them together with left padding and routes each row's result back.

Every row keeps its own grammar (or none), temperature/top-p/seed, token budget and stop strings in the
same batch (see :mod:`.grammar`), so requests never need to be split by sampling settings. A constrained
row that ends without EOS was cut by its budget: it is retried once with twice the budget, then reported
with ``finish_reason="length"``. Batching is static: a batch runs until its longest row ends.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import transformers

from synth.chat_template import ensure_chat_template
from synth.errors import ModelLoadError
from synth.models.local.grammar import GrammarCache, RowControl, RowProcessor, RowStopper
from synth.models.local.hardware import resolve_dtype
from synth.models.local.threads import apply_threads

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenResult:
    """One row's output. ``completion_tokens`` excludes the final EOS."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass
class GenRequest:
    """One generation request. ``grammar`` ``None`` means plain text; ``stop`` applies to plain rows."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: Any = None
    future: Future[GenResult] = field(default_factory=Future)
    attempt: int = 0


@dataclass
class _ScoreJob:
    pairs: list[tuple[list[int], list[int]]]
    future: Future[list[float]] = field(default_factory=Future)


class Engine:
    """A loaded model + tokenizer + grammar cache, driven by one worker thread. Thread-safe API."""

    def __init__(
        self,
        path: Path,
        *,
        dtype: str | None = None,
        max_batch_size: int = 8,
        gather_ms: float = 15.0,
        device: str | None = None,
    ) -> None:
        self.path = path
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_batch_size = max_batch_size
        self.gather_s = gather_ms / 1000.0
        self.model: Any = None
        self._tokenizer: Any = None
        self._grammars: GrammarCache | None = None
        self._load_lock = threading.RLock()
        # Fast tokenizers raise "Already borrowed" when one thread encodes while another decodes and
        # padding/truncation settings change: all encode/decode calls go through this lock.
        self._tok_lock = threading.Lock()
        self._queue: queue.Queue[GenRequest | _ScoreJob | None] = queue.Queue()
        self._carry: deque[GenRequest] = deque()  # retries, run before new requests
        self._thread: threading.Thread | None = None
        self.load_seconds: float | None = None
        #: Sizes of the last generate batches (for tests and benchmarks: is batching happening?).
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    # -- loading -------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loaded on first use, without the model), with a chat template."""
        with self._load_lock:
            if self._tokenizer is None:
                try:
                    tok = transformers.AutoTokenizer.from_pretrained(str(self.path))
                except Exception as exc:
                    raise ModelLoadError(
                        f"cannot load a tokenizer from {self.path}: {exc}; the folder needs tokenizer files "
                        "(tokenizer.json/tokenizer_config.json) as written by tokenizer.save_pretrained()"
                    ) from exc
                tok.padding_side = "left"
                if tok.pad_token_id is None:
                    tok.pad_token = tok.eos_token
                self._tokenizer = ensure_chat_template(tok)
            return self._tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (rendered prompts already hold BOS)."""
        tok = self.tokenizer
        with self._tok_lock:
            return list(tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Any) -> str:
        """Text of ``ids`` with special tokens dropped."""
        tok = self.tokenizer
        with self._tok_lock:
            return str(tok.decode(ids, skip_special_tokens=True))

    @property
    def eos_ids(self) -> set[int]:
        """End-of-sequence token ids (the model's generation config and the tokenizer's)."""
        return self._eos_of(self.model)

    def _eos_of(self, model: Any) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(model, "generation_config", None), self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            ids.update(value if isinstance(value, list) else [] if value is None else [value])
        return ids

    def load(self) -> Engine:
        """Load the model (idempotent, ~1-2 s for the converted embedded model) and start the worker."""
        tokenizer = self.tokenizer
        with self._load_lock:
            if self.model is not None:
                return self
            started = time.monotonic()
            try:  # the idle cores, as training does (synth.models.local.threads)
                apply_threads()
            except ValueError as exc:
                raise ModelLoadError(f"{exc}; unset it or give a number such as 2") from None
            try:
                model: Any = transformers.AutoModelForCausalLM.from_pretrained(
                    str(self.path), dtype=self.dtype
                )
            except Exception as exc:
                raise ModelLoadError(
                    f"cannot load a causal LM from {self.path}: {exc}; the folder must hold a model written "
                    "by save_pretrained() (config.json + *.safetensors)"
                ) from exc
            model = model.to(self.device).eval()
            vocab = model.get_output_embeddings().weight.shape[0]
            eos = self._eos_of(model)
            self._grammars = GrammarCache(tokenizer, vocab, stop_token_ids=sorted(eos))
            self.model = model  # last: callers treat a set model as "loaded"
            self._thread = threading.Thread(
                target=self._worker, name=f"synth-local-{self.path.name}", daemon=True
            )
            self._thread.start()
            self.load_seconds = time.monotonic() - started
            log.info("loaded %s (%s, %s) in %.1f s", self.path, self.dtype, self.device, self.load_seconds)
        return self

    @property
    def grammars(self) -> GrammarCache:
        if self._grammars is None:
            self.load()
        assert self._grammars is not None
        return self._grammars

    @property
    def context_length(self) -> int:
        config = (
            transformers.AutoConfig.from_pretrained(str(self.path))
            if self.model is None
            else self.model.config
        )
        return int(getattr(config, "max_position_embeddings", 8192))

    # -- public API ----------------------------------------------------------------------------------
    def submit(self, request: GenRequest) -> Future[GenResult]:
        """Queue a request; its future resolves with a :class:`GenResult` (or the batch's exception)."""
        self.load()
        self._queue.put(request)
        return request.future

    def submit_scores(self, pairs: Sequence[tuple[list[int], list[int]]]) -> Future[list[float]]:
        """Queue (prompt_ids, continuation_ids) pairs; resolves with each continuation's mean token NLL."""
        self.load()
        job = _ScoreJob([(list(p), list(c)) for p, c in pairs])
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop the worker thread (queued requests fail) and drop the model."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None
        self.model = None

    # -- worker --------------------------------------------------------------------------------------
    def _worker(self) -> None:
        with torch.inference_mode():
            while True:
                batch, scores, stop = self._gather()
                live = [r for r in batch if r.attempt > 0 or r.future.set_running_or_notify_cancel()]
                if live:
                    try:
                        self._run_batch(live)
                    except BaseException as exc:  # the batch fails, the worker lives on
                        log.exception("local generation failed")
                        for r in live:
                            if not r.future.done():
                                r.future.set_exception(exc)
                for job in scores:
                    if job.future.set_running_or_notify_cancel():
                        try:
                            job.future.set_result(self._score(job.pairs))
                        except BaseException as exc:
                            job.future.set_exception(exc)
                if stop:
                    self._fail_pending()
                    return

    def _gather(self) -> tuple[list[GenRequest], list[_ScoreJob], bool]:
        batch: list[GenRequest] = []
        scores: list[_ScoreJob] = []
        while self._carry and len(batch) < self.max_batch_size:
            batch.append(self._carry.popleft())
        deadline = None
        while len(batch) < self.max_batch_size:
            try:
                if not batch and not scores:
                    item = self._queue.get()  # idle: block
                else:
                    deadline = deadline or time.monotonic() + self.gather_s
                    remaining = deadline - time.monotonic()
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, scores, True
            if isinstance(item, _ScoreJob):
                scores.append(item)
            else:
                batch.append(item)
        return batch, scores, False

    def _fail_pending(self) -> None:
        while self._carry:
            self._carry.popleft().future.set_exception(RuntimeError("the local model engine was closed"))
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and not item.future.done():
                item.future.set_exception(RuntimeError("the local model engine was closed"))

    def _run_batch(self, reqs: list[GenRequest]) -> None:
        tok = self.tokenizer
        self.batch_sizes.append(len(reqs))
        pad_id = int(tok.pad_token_id)
        prompt_len = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), prompt_len), pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), prompt_len), dtype=torch.long)
        for i, r in enumerate(reqs):
            ids[i, prompt_len - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, prompt_len - len(r.prompt_ids) :] = 1
        rows = [
            RowControl(
                grammar=r.grammar,
                temperature=r.temperature,
                top_p=r.top_p,
                generator=_generator(r.seed) if r.temperature > 0 else None,
                max_tokens=r.max_tokens,
                stop=r.stop if r.grammar is None else (),  # cutting JSON would break it
            )
            for r in reqs
        ]
        eos = self.eos_ids
        processor = RowProcessor(rows, self.grammars.vocab_size, self.grammars.banned_ids)
        stopper = RowStopper(rows, prompt_len, eos, self.decode)
        config = transformers.GenerationConfig(
            max_new_tokens=max(r.max_tokens for r in reqs),
            do_sample=False,
            eos_token_id=sorted(eos),
            pad_token_id=pad_id,
        )
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=config,
            logits_processor=transformers.LogitsProcessorList([processor]),
            stopping_criteria=transformers.StoppingCriteriaList([stopper]),
        )
        out = out.cpu()
        for i, (r, row) in enumerate(zip(reqs, rows, strict=True)):
            n = row.length if row.length is not None else out.shape[1] - prompt_len
            new_ids = out[i, prompt_len : prompt_len + n].tolist()
            reason: FinishReason = row.finish
            if new_ids and new_ids[-1] in eos:
                new_ids = new_ids[:-1]
            if reason == "length" and r.grammar is not None and r.attempt == 0:
                log.info(
                    "constrained row truncated at %d tokens; retrying with %d", r.max_tokens, 2 * r.max_tokens
                )
                self._carry.append(replace(r, max_tokens=2 * r.max_tokens, attempt=1))
                continue
            text = self.decode(new_ids)
            if r.stop and r.grammar is None:
                cuts = [text.find(s) for s in r.stop if s in text]
                if cuts:
                    text, reason = text[: min(cuts)], "stop"
            r.future.set_result(GenResult(text, reason, len(r.prompt_ids), len(new_ids)))

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Exact mean NLL per pair from one forward pass per chunk (right padding: no position shifts)."""
        decoder = self.model.get_decoder()
        head = self.model.get_output_embeddings()
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        pad_id = int(self.tokenizer.pad_token_id)
        results: list[float] = []
        for start in range(0, len(pairs), self.max_batch_size):
            chunk = pairs[start : start + self.max_batch_size]
            width = max(len(p) + len(c) for p, c in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (p, c) in enumerate(chunk):
                ids[i, : len(p) + len(c)] = torch.tensor(p + c, dtype=torch.long)
                mask[i, : len(p) + len(c)] = 1
            hidden = decoder(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            ).last_hidden_state
            for i, (p, c) in enumerate(chunk):
                # logits at position t predict token t + 1
                logits = head(hidden[i, len(p) - 1 : len(p) + len(c) - 1]).float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                logp = torch.log_softmax(logits, dim=-1)
                target = torch.tensor(c, dtype=torch.long, device=logp.device)
                results.append(float(-logp.gather(1, target[:, None]).mean()))
        return results


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed if seed is not None else random.getrandbits(63))
    return gen


_REGISTRY: dict[tuple[str, str, str], Engine] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_engine(
    path: Path,
    *,
    dtype: str | None = None,
    max_batch_size: int = 8,
    gather_ms: float = 15.0,
    device: str | None = None,
) -> Engine:
    """The process-wide engine for (folder, dtype, device), created (not yet loaded) on first request.

    Clients for the same model share one loaded model and one batch queue; the largest requested
    ``max_batch_size`` wins.
    """
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (str(path.resolve()), str(resolve_dtype(dtype, dev)), dev)
    with _REGISTRY_LOCK:
        engine = _REGISTRY.get(key)
        if engine is None:
            engine = _REGISTRY[key] = Engine(
                path, dtype=dtype, max_batch_size=max_batch_size, gather_ms=gather_ms, device=dev
            )
        engine.max_batch_size = max(engine.max_batch_size, max_batch_size)
        return engine


def close_shared_engines() -> None:
    """Stop every shared engine (frees memory; later calls load again)."""
    with _REGISTRY_LOCK:
        engines = list(_REGISTRY.values())
        _REGISTRY.clear()
    for engine in engines:
        engine.close()
