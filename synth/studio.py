"""Graph factories for ``langgraph dev`` / LangGraph Studio (``langgraph.json`` -> ``graphs/studio.py``).

The LangGraph server reads the attribute named in ``langgraph.json`` straight from the module's namespace
and, when it is a function, calls it with the run's config for every run and schema request (a "graph
factory"). So each built-in graph is exposed as a factory that:

- reads its options from the LangGraph config (``configurable``, or the run's ``context``, which the
  server mirrors into it): ``model`` (a model spec for every role) and the graph's own options
  (``max_rounds``, ``top_k``, ...), validated and typed by a pydantic model that is also the graph's
  config/context schema, so Studio shows a form for them;
- builds in a worker thread (an async factory): building reads files (entry points, a corpus, an index)
  and the dev server refuses blocking calls on its event loop;
- never raises: a graph that cannot be built (ATM with a model that has no log-probabilities, a bad
  option) becomes a one-node graph whose run fails with the reason, for that graph and those options only.
  A factory that raised would stop the whole server at startup.

Built graphs are cached per (graph, options): a run does not rebuild its graph or its model clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, create_model

DEFAULT_MODEL = "local:gemma-3-270m"
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "examples" / "studio_corpus.jsonl"
MODEL_HELP = (
    "Model spec for every role (e.g. openai:MODEL@http://host:port/v1, local:gemma-3-270m); "
    "default: the SYNTH_MODEL environment variable, else local:gemma-3-270m"
)
_BUILT: dict[tuple[str, str], Any] = {}
_SCHEMAS: dict[str, type[BaseModel]] = {}
_LOCK = threading.Lock()


class GraphUnavailable(RuntimeError):
    """Raised by the run of a graph that could not be built with the options it was given."""


def default_model() -> str:
    return os.environ.get("SYNTH_MODEL") or DEFAULT_MODEL


def options_schema(name: str) -> type[BaseModel]:
    """The pydantic model of graph ``name``'s Studio options: ``model`` plus the graph's own options.

    Types come from the annotations of the graph's ``build`` keyword arguments (a default of ``None`` says
    nothing about the type), defaults from the graph's ``default_options``.
    """
    if name in _SCHEMAS:
        return _SCHEMAS[name]
    from synth.registry import load_graph

    graph = load_graph(name)
    try:
        hints = typing.get_type_hints(graph.build)
    except Exception:  # an annotation that does not resolve: fall back to the default's type
        hints = {}
    fields: dict[str, Any] = {"model": (str, Field(default_factory=default_model, description=MODEL_HELP))}
    for option, default in graph.default_options.items():
        kind = hints.get(option, Any if default is None else type(default))
        if option == "corpus":
            default = os.environ.get("SYNTH_CORPUS", str(DEFAULT_CORPUS))
            kind = str
        fields[option] = (kind, default)
    schema = create_model(f"{name.capitalize()}Options", **fields)
    schema.__doc__ = f"Options of the '{name}' graph (LangGraph config `configurable` or run context)."
    _SCHEMAS[name] = schema
    return schema


def chosen_options(name: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options of ``config["configurable"]`` that graph ``name`` knows; the server's own keys and
    unknown names are ignored (the server puts thread ids, checkpointers etc. in the same mapping)."""
    configurable = (config or {}).get("configurable") or {}
    known = options_schema(name).model_fields
    chosen = {key: value for key, value in configurable.items() if key in known}
    return {"model": default_model(), **chosen}


def build(name: str, options: Mapping[str, Any]) -> Any:
    """The compiled graph ``name`` with these options (validated), its options schema attached."""
    from synth.engine.session import RunRequest, build_models
    from synth.registry import load_graph

    schema = options_schema(name)
    values = schema.model_validate(dict(options)).model_dump()
    spec = values.pop("model")
    graph = load_graph(name)
    request = RunRequest(graph=name, input=Path("studio"), out=Path("studio"), models={"default": spec})
    models = build_models(request.models, request)
    compiled = graph.build(models, **graph.resolve_options(values))
    return compiled.copy(update={"context_schema": schema})


def unavailable(name: str, options: Mapping[str, Any], error: BaseException) -> Any:
    """A graph whose only node fails with why graph ``name`` could not be built with ``options``."""
    from langgraph.graph import END, START, StateGraph

    from synth.graph import BaseState

    spec = options.get("model") or default_model()
    if isinstance(error, ValidationError):
        detail = "; ".join(f"option {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    else:
        detail = str(error).rstrip(".") or type(error).__name__
    message = (
        f"graph '{name}' cannot be built with model '{spec}' and these options: {detail}. Pick another "
        "model (the 'model' option, or SYNTH_MODEL for the server) or fix the option"
    )

    async def cannot_build(state: BaseState) -> dict[str, Any]:
        raise GraphUnavailable(message)

    builder = StateGraph(BaseState, context_schema=options_schema(name))
    builder.add_node("cannot_build", cannot_build)
    builder.add_edge(START, "cannot_build")
    builder.add_edge("cannot_build", END)
    return builder.compile(name=name)


def compiled(name: str, config: Mapping[str, Any] | None = None) -> Any:
    """Graph ``name`` for this LangGraph config: built once per distinct options, never raising."""
    options = chosen_options(name, config)
    key = (name, json.dumps(options, sort_keys=True, default=str))
    with _LOCK:
        if key not in _BUILT:
            try:
                _BUILT[key] = build(name, options)
            except Exception as error:  # any build failure is this graph's, never the server's
                _BUILT[key] = unavailable(name, options, error)
        return _BUILT[key]


def factory(name: str) -> Callable[[Mapping[str, Any]], Awaitable[Any]]:
    """The graph factory for ``langgraph.json``: one ``config`` parameter, as the server wants."""

    async def make(config: Mapping[str, Any]) -> Any:
        return await asyncio.to_thread(compiled, name, config)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = f"The '{name}' graph for a LangGraph config (see synth.studio)."
    return make
