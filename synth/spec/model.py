"""The shape of a YAML graph spec, validated by pydantic (unknown keys are errors, with their line)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

START, END = "START", "END"
#: Names every template and condition may use besides seed fields and node names.
BUILTIN_NAMES = frozenset({"seed", "round", "history", "visits"})
FANOUT_NAMES = frozenset({"item", "index"})
#: Default limit on a spec's nodes (``max_nodes:`` in the spec raises it); edges: EDGES_PER_NODE x that.
MAX_NODES = 1000
EDGES_PER_NODE = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RoleSpec(_Strict):
    """An inline role: Jinja2 templates and an output schema (JSON Schema mapping or a model reference)."""

    instructions: str
    prompt: str
    output: dict[str, Any] | str | None = None
    description: str = ""
    sampling: dict[str, Any] = {}


class NodeSpec(_Strict):
    """A node runs one role. ``for_each`` fans it out over a list; ``max_rounds`` bounds a loop."""

    role: str
    for_each: str | None = None
    max_rounds: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _role_shorthand(cls, value: Any) -> Any:
        return {"role": value} if isinstance(value, str) else value


class EdgeSpec(_Strict):
    """``from -> to``; with ``when``, taken only if the condition holds (first matching edge wins)."""

    source: str = Field(alias="from")
    to: str
    when: str | None = None


class SftSpec(_Strict):
    system: str | None = None
    prompt: str
    response: str
    when: str | None = None


class DpoSpec(_Strict):
    system: str | None = None
    prompt: str
    chosen: str
    rejected: str
    when: str | None = None


class ExportsSpec(_Strict):
    sft: SftSpec | None = None
    dpo: DpoSpec | None = None


class GraphSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")
    description: str = ""
    version: str = "1"
    seed: dict[str, dict[str, Any]] | list[str]
    roles: dict[str, RoleSpec] = Field(min_length=1)
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(min_length=1)
    exports: ExportsSpec = ExportsSpec()
    #: Largest graph the spec may describe (nodes; edges up to 4x this). Default: ``MAX_NODES``.
    max_nodes: int | None = Field(default=None, ge=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    def seed_schema(self) -> dict[str, Any]:
        """The seed as an object schema: a list of names means required strings."""
        if isinstance(self.seed, list):
            return {
                "properties": {name: {"type": "string"} for name in self.seed},
                "required": list(self.seed),
            }
        required = [name for name, schema in self.seed.items() if "default" not in schema]
        return {"properties": dict(self.seed), "required": required}
