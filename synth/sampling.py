"""Generation settings per run and per role, without editing code (``synth run --sampling``).

Precedence, lowest first: the backend's default (plus :data:`DEFAULT_MAX_TOKENS` for OpenAI-compatible
servers, see :func:`backend_defaults`) < the role's own ``sampling`` (a built-in role's default, or what a
YAML graph or a graph option such as ATM's ``temperature`` gives it) < the run's ``--sampling KEY=VALUE``
(every role) < the run's ``--sampling ROLE.KEY=VALUE`` (that role).

The run's settings live in :class:`~synth.graph.ModelSet` (``models.sampling``, keyed ``default`` or a
role name); ``models.for_role(role)`` hands a role a :class:`SamplingOverride` view of its client that
lays them over whatever the role asks for. They are part of config.yaml and of the run fingerprint.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synth.errors import ALL_ROLES, SynthError, unknown_roles
from synth.models.forwarding import ClientView

#: ``max_tokens`` sent to OpenAI-compatible servers when neither the role nor the run sets one: servers
#: differ wildly (transformers serve: 1024, llama.cpp: until the context is full), and an unbounded reply
#: on a slow server looks like a hang.
DEFAULT_MAX_TOKENS = 1024


class SamplingError(SynthError):
    """A ``--sampling`` setting that is malformed, unknown, or names a role the graph does not have."""


class Settings(BaseModel):
    """The sampling parameters every backend understands (OpenAI names), validated."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None


KEYS = tuple(Settings.model_fields)


def parse(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["max_tokens=256", "judge.temperature=0"]`` -> ``{"default": {...}, "judge": {...}}``.

    Values are YAML (``stop=[".", "\\n"]``, ``temperature=0.2``); each is validated by :class:`Settings`.
    """
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SamplingError(
                f"--sampling {pair!r}: use KEY=VALUE or ROLE.KEY=VALUE (keys: {', '.join(KEYS)})"
            )
        role, _, name = key.strip().rpartition(".")
        out.setdefault(role or ALL_ROLES, {})[name] = yaml.safe_load(value)
    return validate(out)


def validate(sampling: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each scope's settings checked (unknown keys and bad values name the scope); unset keys dropped."""
    out: dict[str, dict[str, Any]] = {}
    for scope, values in sampling.items():
        where = "every role" if scope == ALL_ROLES else f"role '{scope}'"
        try:
            settings = Settings.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise SamplingError(f"--sampling for {where}: {problems} (keys: {', '.join(KEYS)})") from None
        chosen = settings.model_dump(exclude_none=True)
        if chosen:
            out[scope] = chosen
    return out


def check_roles(sampling: Mapping[str, Any], graph_name: str, roles: Iterable[str]) -> None:
    """A ``ROLE.KEY`` setting for a role the graph does not have is an error (a typo would be ignored)."""
    known = sorted(roles)
    unknown = unknown_roles(sorted(sampling), known)
    if unknown:
        raise SamplingError(
            f"--sampling names role(s) {', '.join(unknown)} that graph '{graph_name}' does not have; "
            f"its roles: {', '.join(known)}. Unknown: {', '.join(unknown.values())}"
        )


def for_role(sampling: Mapping[str, Mapping[str, Any]], role: str) -> dict[str, Any]:
    """The run's settings for ``role``: every-role settings, then that role's."""
    return {**sampling.get(ALL_ROLES, {}), **sampling.get(role, {})}


def backend_defaults(spec: str) -> dict[str, Any]:
    """Client-level defaults (below every role and run setting) for a model spec."""
    return {"max_tokens": DEFAULT_MAX_TOKENS} if spec.startswith("openai:") else {}


class SamplingOverride(ClientView):
    """A model client seen by one role: the run's settings laid over the role's in every ``create``.

    Everything else (``spec``, ``cache``, ``score``, ``close``...) is the wrapped client's, so capability
    checks (``isinstance(client, SupportsLogprobs)``) see the real backend.
    """

    def __init__(self, inner: Any, settings: Mapping[str, Any]) -> None:
        super().__init__(inner)
        self._settings = dict(settings)

    def _laid_over(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "extra_create_args": {**(kwargs.get("extra_create_args") or {}), **self._settings}}

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        return await self.inner.create(messages, **self._laid_over(kwargs))

    def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
        return self.inner.create_stream(messages, **self._laid_over(kwargs))


def effective_sampling(graph: Any, run: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per role, what its calls ask for: the role's own settings under the run's (provenance, the card)."""
    out: dict[str, dict[str, Any]] = {}
    for role in graph.roles:
        settings = {**role.sampling, **for_role(run, role.name)}
        if settings:
            out[role.name] = settings
    return out


def truncated_steps(trajectory: Any) -> list[Any]:
    """The trajectory's free-text steps whose reply was cut by the token budget (``meta.truncated``, set
    by :meth:`synth.role.Role.run` for finish reason "length" unless the role expects the cut).

    A structured reply cut short fails validation and is a failed step already; a free-text one would be
    stored as ok and exported as a training target that stops mid-sentence.
    """
    return [s for s in trajectory.steps if s.ok and s.meta.get("truncated")]
