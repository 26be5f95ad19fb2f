"""The configuration reference, generated from the config schema so that it cannot drift.

:func:`config_reference` walks the pydantic models that read ``deploybot.yaml`` and the
checklist files, and writes every key with its type, default, whether it is required and
what it does. Keys, types and defaults come from the models; what a key does comes from its
``Field(description=...)`` when it has one, else from :data:`DESCRIPTIONS` (tests fail when a
key has neither, or when that table names a key that no longer exists).
``deploybot config reference`` prints it; ``docs/config-reference.md`` is its output.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bot.config import deploy_specs as steps
from bot.config.change_control import Roles
from bot.config.descriptions import DEFAULTS_IN_WORDS, DESCRIPTIONS
from bot.config.freezes import TimeZone
from bot.config.probe_specs import (
    Duration,
    EnvVarName,
    Port,
    ProbeSpec,
    format_duration,
)
from bot.config.reference_pages import MODELS, PARTS, Page  # noqa: F401 (re-exported)
from bot.config.schema import (
    Channel,
    Config,
    Members,
    Name,
    ProbeRefs,
    RoleRefs,
    RollbackTarget,
)

# Value types with a name of their own, and the words the reference uses for them.
_NAMED_TYPES: tuple[tuple[object, str], ...] = (
    (Duration, "[duration](#duration)"),
    (EnvVarName, "[env var name](#env-var-name)"),
    (Channel, "[channel](#channel)"),
    (Name, "[name](#name)"),
    (Members, "list of [members](#member)"),
    (RoleRefs, "list of role names"),
    (Roles, "list of role names"),
    (ProbeRefs, "list of probe names"),
    (Port, "port"),
    (datetime, "date and time (ISO 8601: `2026-11-27T00:00`, offset optional)"),
    (TimeZone, "time zone"),
    (RollbackTarget, "[rollback target](#rollback-targets) (by `kind`)"),
    (ProbeSpec, "[probe](#probes) (by `kind`)"),
    (steps.DeployStep, "[deploy step](#deploy-steps) (by `kind`)"),
    (steps.Template, "template (`{version}` …)"),
)

VALUE_TYPES = """\
## Value types

<a id="duration"></a>**duration**: a positive length of time: `30s`, `5m`, `1h30m`, `2d`,
`250ms`, or a whole number of seconds.

<a id="env-var-name"></a>**env var name**: the *name* of an environment variable
(`[A-Z_][A-Z0-9_]*`, like `DATABASE_URL`), never its value.

<a id="channel"></a>**channel**: a Slack channel as `#name` or its ID (`C…`, `G…`).

<a id="name"></a>**name**: letters, digits, `-`, `_` and `.`, starting with a letter or digit.

<a id="member"></a>**member**: a Slack user ID (`U…`, `W…`), a user-group ID (`S…`) or a
user-group handle (`@release-managers`).
"""


def config_reference() -> str:
    """The Markdown reference of every configuration and checklist key.

    Returns:
        The document ``docs/config-reference.md`` holds, ending in a newline.
    """
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the configuration schema (bot/config/schema.py,",
        "     bot/config/probe_specs.py, bot/domain/checklist.py) by `deploybot config reference`.",
        "     Do not edit: regenerate with",
        "     `deploybot config reference > docs/config-reference.md`. -->",
        "",
        "Every key deploybot reads from its config file and from checklist files. "
        "*Required* keys have no default.",
        "",
    ]
    for part in PARTS:
        out += [f"- [{part.title}](#{_slug(part.title)})"]
        out += [f"  - [{page.title}](#{page.anchor})" for page in part.pages]
    out += ["- [Value types](#value-types)", ""]
    for part in PARTS:
        out += [f"## {part.title}", "", part.intro, ""]
        for page in part.pages:
            out += _model_section(page)
    out.append(VALUE_TYPES)
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass(frozen=True)
class Key:
    """One key of one model, as the reference shows it."""

    model: type[BaseModel]
    name: str  # the attribute (``for_``)
    key: str  # as written in YAML (``for``)
    type: str
    required: bool
    default: str
    description: str


def keys(model: type[BaseModel]) -> Iterator[Key]:
    """The keys of ``model``, in declaration order (inherited ones first)."""
    hints = typing.get_type_hints(model, include_extras=True)
    for name, field in model.model_fields.items():
        # A kind's `kind` has a default in its model, but the union needs it to pick the model.
        selector = name == "kind" and typing.get_origin(field.annotation) is Literal
        yield Key(
            model=model,
            name=name,
            key=field.alias or name,
            type=_describe_type(hints[name], field),
            required=selector or field.is_required(),
            default="" if selector else _default(model, name, field),
            description=description(model, name),
        )


def description(model: type[BaseModel], name: str) -> str:
    """What key ``name`` of ``model`` does: its Field description, else the table's."""
    field = model.model_fields[name]
    if field.description:
        return field.description
    if name == "kind" and typing.get_origin(field.annotation) is Literal:
        return "Selects this kind."
    return DESCRIPTIONS.get((_defining_class(model, name).__name__, name), "")


def _model_section(page: Page) -> list[str]:
    doc = inspect.cleandoc(vars(page.model).get("__doc__") or "")  # its own, not BaseModel's
    for name, field in page.model.model_fields.items():  # users write the alias (``for``)
        if field.alias and field.alias != name:
            doc = doc.replace(f"``{name}``", f"``{field.alias}``")
    doc = _markdown(doc)
    out = [f'<a id="{page.anchor}"></a>', f"### {page.title}", ""]
    if doc and page.model is not Config:
        out += [doc, ""]
    out += ["| Key | Type | Required | Default | Description |", "| --- | --- | --- | --- | --- |"]
    for key in keys(page.model):
        required = "yes" if key.required else ""
        out.append(
            f"| `{key.key}` | {key.type} | {required} | {key.default} | {_cell(key.description)} |"
        )
    return [*out, ""]


def _describe_type(hint: object, field: FieldInfo) -> str:
    text = _type_text(hint)
    limits = _limits(field.metadata)
    return f"{text} ({limits})" if limits else text


def _type_text(hint: object, *, plural: bool = False) -> str:
    for named, words in _NAMED_TYPES:
        if hint == named:
            return words
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        inner = _type_text(args[0], plural=plural)
        limits = _limits([m for extra in args[1:] for m in _metadata_of(extra)])
        return f"{inner} {limits}" if limits else inner
    if origin in (Union, types.UnionType):
        options = [_type_text(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args) if len(args) > 1 else f"`{args[0]}`"
    if origin in (tuple, list):
        return f"list of {_type_text(args[0], plural=True)}"
    if origin is dict and args[1] is Any:  # a suggestion's probe: checked once it is copied
        return "mapping"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        page = next((p for part in PARTS for p in part.pages if p.model is hint), None)
        if page is None:
            return hint.__name__
        return f"[{page.word}{'s' if plural else ''}](#{page.anchor})"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in hint)
    if hint is timedelta:
        return "[duration](#duration)"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if isinstance(hint, type) and hint in simple:
        return simple[hint] + ("s" if plural else "")
    return str(hint)


def _metadata_of(extra: object) -> list[object]:
    return list(extra.metadata) if isinstance(extra, FieldInfo) else [extra]


def _limits(metadata: list[object]) -> str:
    """``from 1 to 65535``, ``≥ 0``, ``not empty``: the bounds pydantic checks."""
    low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    size = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0)
    found = []
    if low is not None and high is not None:
        found.append(f"from {low} to {high}")
    elif low is not None:
        found.append(f"≥ {low}")
    elif high is not None:
        found.append(f"≤ {high}")
    if size == 1:
        found.append("not empty")
    elif size:
        found.append(f"at least {size}")
    return ", ".join(found)


def _default(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if field.is_required():
        return ""
    derived = DEFAULTS_IN_WORDS.get((_defining_class(model, name).__name__, name))
    if derived is not None:
        return derived
    if field.default_factory is not None:
        if field.default_factory_takes_validated_data:
            raise ValueError(f"{model.__name__}.{name}: add its default to DEFAULTS_IN_WORDS")
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    return _value(value)


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value, default=str)}`"


def _defining_class(model: type[BaseModel], name: str) -> type:
    """The class in ``model``'s ancestry that declares ``name`` (``ProbeBase`` for ``timeout``)."""
    for cls in reversed(model.__mro__):
        if name in getattr(cls, "__annotations__", {}):
            return cls
    return model


def _markdown(doc: str) -> str:
    return doc.replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _slug(title: str) -> str:
    return "-".join(title.lower().split())
