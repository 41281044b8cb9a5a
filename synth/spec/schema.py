"""Output schemas of YAML roles: a JSON Schema subset -> pydantic model, or an allowlisted Python model.

The converter covers what role outputs need - objects, strings, numbers, integers, booleans, arrays,
nested objects, ``enum``/``const``, nullable types, bounds and descriptions - and refuses the rest by
name (``$ref``, ``anyOf``...), so a schema never silently means less than it says. Models are built
with ``extra="forbid"`` like every other role output.

A Python model is named ``package.module:Class``. Importing a module runs its code, so only models
registered under the entry-point group ``synth.models``, or in modules whose name starts with a prefix
listed in ``SYNTH_ALLOWED_MODELS`` (comma-separated; the built-in ``roles`` package is always allowed),
may be named; anything else is refused before any import.
"""

from __future__ import annotations

import importlib
import os
import re
from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

ALLOW_ENV = "SYNTH_ALLOWED_MODELS"
BUILTIN_PREFIXES = ("roles.",)
MODEL_GROUP = "synth.models"
_SIMPLE: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
_BOUNDS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_length",
    "maxItems": "max_length",
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "pattern": "pattern",
}
_KNOWN = {
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "const",
    "description",
    "default",
    "title",
    *_BOUNDS,
}


class SchemaError(ValueError):
    """A schema uses something the converter does not support, or names a model it may not import."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def model_from_schema(name: str, schema: dict[str, Any], *, extra: str = "forbid") -> type[BaseModel]:
    """A pydantic model for an object schema (``type: object`` may be left out given ``properties``)."""
    if schema.get("type", "object") != "object" or not isinstance(schema.get("properties"), dict):
        raise SchemaError("an output schema must be an object with properties (JSON Schema)")
    return _object_model(_class_name(name), schema, (), extra)


def _object_model(name: str, schema: dict[str, Any], path: tuple[Any, ...], extra: str) -> type[BaseModel]:
    _check_keys(schema, path)
    required = schema.get("required", [])
    properties: dict[str, Any] = schema.get("properties") or {}
    unknown = [r for r in required if r not in properties]
    if unknown:
        raise SchemaError(f"required field(s) {unknown} are not in properties", (*path, "required"))
    fields: dict[str, Any] = {}
    for field_name, sub in properties.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(field_name)):
            raise SchemaError(
                f"field name {field_name!r} must be an identifier", (*path, "properties", field_name)
            )
        where = (*path, "properties", field_name)
        annotation = _annotation(f"{name}{_class_name(field_name)}", sub, where, extra)
        constraints = {_BOUNDS[k]: v for k, v in sub.items() if k in _BOUNDS}
        if field_name in required:
            default: Any = ...
        else:
            default = sub.get("default")
            annotation = annotation | None
        fields[field_name] = (annotation, Field(default, description=sub.get("description"), **constraints))
    config = ConfigDict(extra="forbid" if extra == "forbid" else "allow")
    return create_model(name, __config__=config, **fields)  # type: ignore[call-overload,no-any-return]


def _annotation(name: str, schema: Any, path: tuple[Any, ...], extra: str) -> Any:
    if not isinstance(schema, dict):
        raise SchemaError(f"a property schema must be a mapping, not {type(schema).__name__}", path)
    _check_keys(schema, path)
    if "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        if not values:
            raise SchemaError("enum must list at least one value", path)
        return Literal[tuple(values)]
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        kind = "object"
    nullable = isinstance(kind, list) and "null" in kind
    if isinstance(kind, list):
        rest = [k for k in kind if k != "null"]
        if len(rest) != 1:
            raise SchemaError(f"type {kind} is not supported: use one type, optionally with null", path)
        kind = rest[0]
    if kind in _SIMPLE:
        annotation: Any = _SIMPLE[kind]
    elif kind == "array":
        item = _annotation(f"{name}Item", schema.get("items") or {"type": "string"}, (*path, "items"), extra)
        annotation = list[item]  # type: ignore[valid-type]
    elif kind == "object":
        annotation = _object_model(name, {"properties": {}, **schema}, path, extra)
    else:
        raise SchemaError(
            f"type {kind!r} is not supported; use string, integer, number, boolean, array, object", path
        )
    return annotation | None if nullable else annotation


def _check_keys(schema: dict[str, Any], path: tuple[Any, ...]) -> None:
    unsupported = sorted(set(schema) - _KNOWN)
    if unsupported:
        raise SchemaError(
            f"unsupported JSON Schema keyword(s) {', '.join(unsupported)}; "
            f"supported: {', '.join(sorted(_KNOWN))}",
            path,
        )


def _class_name(name: Any) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", str(name)) if part) or "Output"


def import_model(reference: str) -> type[BaseModel]:
    """The pydantic model named ``package.module:Class`` (or an entry-point name), if it is allowed."""
    registered = {ep.name: ep for ep in entry_points(group=MODEL_GROUP)}
    if reference in registered:
        target = registered[reference].load()
    else:
        module_name, sep, attribute = reference.partition(":")
        if not sep or not module_name or not attribute:
            raise SchemaError(
                f"output {reference!r} is neither a JSON Schema mapping, an entry point in group "
                f"'{MODEL_GROUP}', nor a package.module:Class reference"
            )
        allowed = (*BUILTIN_PREFIXES, *_env_prefixes())
        registered_values = {ep.value for ep in registered.values()}
        if reference not in registered_values and not f"{module_name}.".startswith(allowed):
            raise SchemaError(
                f"output model {reference!r} is not allowlisted: register it under the entry-point group "
                f"'{MODEL_GROUP}' or add its module prefix to {ALLOW_ENV} (comma-separated)"
            )
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise SchemaError(f"output model {reference!r} cannot be imported: {exc}") from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise SchemaError(f"output model {reference!r} is not a pydantic BaseModel subclass")
    return target


def _env_prefixes() -> tuple[str, ...]:
    items = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(",") if p.strip()]
    return tuple(p if p.endswith(".") else f"{p}." for p in items)
