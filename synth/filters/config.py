"""Filter specs: one pydantic model per kind, read from YAML (``filters:`` list) or ``--filter`` flags.

Each kind has only the keys it uses (``extra="forbid"``), so a typo is an error that names the file, the
line of the entry and the key. Fields are dotted paths into the trajectory (``result.evolved``,
``seed.answers``).
"""

from __future__ import annotations

import re
import shlex
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synth.errors import SynthError

DEFAULT_REFUSALS = (
    "as an ai language model",
    "i cannot help with",
    "i'm sorry, but i can't",
    "i am unable to",
    "i can't assist with",
)

DEFAULT_RUBRIC = """\
{% if prompt %}Request:
{{ prompt }}

{% endif %}Response:
{{ text }}

Score the response from {{ low }} to {{ high }} for correctness, helpfulness and clarity \
({{ high }} = excellent, {{ low }} = useless or wrong)."""

DEFAULT_JUDGE_INSTRUCTIONS = (
    "You are a strict, fair judge of training data quality. Follow the rubric. Reply with only a JSON "
    "object: a short `reason`, then a numeric `score` from {{ low }} to {{ high }}."
)


class FilterConfigError(SynthError):
    """A filters YAML file or ``--filter`` flag is invalid; the message says where and how to fix it."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TextSpec(_Spec):
    field: str = Field(description="dotted path of the text to check, e.g. result.evolved")


class LengthSpec(_TextSpec):
    kind: Literal["length"]
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _a_bound(self) -> LengthSpec:
        if self.min_chars is None and self.max_chars is None:
            raise ValueError("give min_chars, max_chars or both")
        return self


class RegexSpec(_TextSpec):
    kind: Literal["regex"]
    pattern: str
    must_match: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a valid regular expression: {exc}") from None
        return value


class RequiredSpec(_Spec):
    kind: Literal["required"]
    fields: list[str] = Field(min_length=1)


class RefusalSpec(_TextSpec):
    kind: Literal["refusal"]
    phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSALS), min_length=1)


class LanguageSpec(_TextSpec):
    """Filters text confidently detected (py3langid) as a language not in ``languages``."""

    kind: Literal["language"]
    languages: list[str] = Field(min_length=1, description="ISO 639-1 codes to keep, e.g. [en]")
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="below it, the row is not judged")
    min_chars: int = Field(default=20, ge=0, description="shorter text is not judged (detection guesses)")


class GoldSpec(_TextSpec):
    kind: Literal["exact_match", "f1"]
    answers_field: str = "seed.answers"
    threshold: float = Field(default=0.5, ge=0, le=1, description="f1 only: the lowest passing F1")


class DedupSpec(_TextSpec):
    """Exact duplicates after SQuAD-style normalisation; the first occurrence stays."""

    kind: Literal["dedup"]


class NearDupSpec(_TextSpec):
    """Near duplicates: MinHash LSH (datasketch) over character n-grams of the normalised text."""

    kind: Literal["near_dup"]
    threshold: float = Field(default=0.8, gt=0, le=1, description="estimated Jaccard similarity")
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1, le=20)


class JudgeSpec(_TextSpec):
    """An LLM judge (a Role) scores ``field`` with a Jinja ``rubric``; rows below ``threshold`` go."""

    kind: Literal["judge"]
    threshold: float
    rubric: str = DEFAULT_RUBRIC
    instructions: str = DEFAULT_JUDGE_INSTRUCTIONS
    prompt_field: str | None = Field(default=None, description="dotted path shown as {{ prompt }}")
    scale: tuple[float, float] = (1.0, 10.0)
    model: str | None = Field(default=None, description="model spec; default --model, else the run's")
    name: str = Field(default="judge", description="key of the score in scores.filters")

    @field_validator("rubric", "instructions")
    @classmethod
    def _template_parses(cls, value: str) -> str:
        try:
            jinja2.Environment().parse(value)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"template line {exc.lineno}: {exc.message}") from None
        return value

    @model_validator(mode="after")
    def _threshold_on_scale(self) -> JudgeSpec:
        low, high = self.scale
        if not low < high or not low <= self.threshold <= high:
            raise ValueError(f"need scale low < high and threshold within it (scale {self.scale})")
        return self


FilterSpec = Annotated[
    LengthSpec
    | RegexSpec
    | RequiredSpec
    | RefusalSpec
    | LanguageSpec
    | GoldSpec
    | DedupSpec
    | NearDupSpec
    | JudgeSpec,
    Field(discriminator="kind"),
]
SPEC_BY_KIND: dict[str, type[_Spec]] = {
    kind: cls
    for cls in typing.get_args(typing.get_args(FilterSpec)[0])
    for kind in typing.get_args(cls.model_fields["kind"].annotation)
}


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: list[FilterSpec] = Field(default_factory=list)


def load_config(path: Path | str) -> FilterConfig:
    """Read a filters YAML file; errors name the file, the line of the offending entry and the key."""
    path = Path(path)
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FilterConfigError(f"{path}: cannot read the filters file: {exc}") from None
    try:
        return FilterConfig.model_validate(data)
    except ValidationError as exc:
        lines = _entry_lines(text)
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            where = f"{path}:{lines[loc[1]]}" if len(loc) > 1 and loc[1] in lines else str(path)
            problems.append(f"{where}: {'.'.join(map(str, loc))}: {error['msg']}")
        kinds = ", ".join(SPEC_BY_KIND)
        raise FilterConfigError(
            "invalid filter config: " + "; ".join(problems) + f" (kinds: {kinds}; see docs/filters.md)"
        ) from None


def _entry_lines(text: str) -> dict[Any, int]:
    """1-based line of each entry of the ``filters:`` list (for error messages)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "filters" and isinstance(value, yaml.SequenceNode):
            return {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return {}


def parse_flag(text: str) -> dict[str, Any]:
    """``--filter "KIND key=value ..."`` -> a spec dict; list-valued keys take comma-separated values.

    Values stay strings for pydantic to convert (``min_chars=20`` -> 20), so a regex like ``[a-z]+`` is
    never mistaken for a YAML list. Quote values with spaces: ``pattern="(?i)lorem ipsum"``.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FilterConfigError(f"--filter {text!r}: {exc}") from None
    if not words or words[0] not in SPEC_BY_KIND:
        raise FilterConfigError(
            f"--filter {text!r}: start with a kind ({', '.join(SPEC_BY_KIND)}), then key=value pairs, "
            'e.g. --filter "length field=result.evolved min_chars=20"'
        )
    cls = SPEC_BY_KIND[words[0]]
    spec: dict[str, Any] = {"kind": words[0]}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise FilterConfigError(f"--filter {text!r}: {word!r} must look like key=value")
        annotation = cls.model_fields[key].annotation if key in cls.model_fields else None
        is_list = typing.get_origin(annotation) in (list, tuple)
        spec[key] = [v.strip() for v in value.split(",")] if is_list else value
    return spec


def build_config(path: Path | str | None, flags: list[str]) -> FilterConfig:
    """The YAML file's filters (if any), then the ``--filter`` flags', validated as one config."""
    specs = list(load_config(path).filters) if path is not None else []
    try:
        extra = FilterConfig.model_validate({"filters": [parse_flag(flag) for flag in flags]}).filters
    except ValidationError as exc:
        problems = "; ".join(
            f"--filter {flags[int(e['loc'][1])]!r}: {'.'.join(map(str, e['loc'][2:]))}: {e['msg']}"
            for e in exc.errors()
        )
        raise FilterConfigError(f"invalid --filter: {problems}") from None
    return FilterConfig(filters=[*specs, *extra])
