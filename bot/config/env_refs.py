"""The environment variables a configuration names, and those of them that are not set.

Found generically: every field typed :data:`~bot.config.probe_specs.EnvVarName` (alone, in a
tuple, or as a mapping's values), anywhere in the config's models. A field added later with
that type is found without a change here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel

from bot.config.probe_specs import EnvVarName
from bot.config.schema import Config

# The validator that makes a ``str`` an ``EnvVarName``: what the walk looks for.
_ENV_VALIDATOR = next(m for m in get_args(EnvVarName)[1:] if isinstance(m, AfterValidator))


@dataclass(frozen=True)
class EnvVarRef:
    """A place in the config that names an environment variable.

    Attributes:
        name: the variable (``PAGERDUTY_ROUTING_KEY_PROD``).
        where: the key naming it, as a dotted YAML path (``environments.prod.pagerduty``
            ``.routing_key_env``).
    """

    name: str
    where: str


def env_var_refs(config: Config) -> list[EnvVarRef]:
    """Every environment variable the config names, where it names it, in file order."""
    return list(_walk(config, ()))


def unset_env_vars(config: Config, environ: Mapping[str, str]) -> dict[str, list[str]]:
    """The variables the config names that ``environ`` lacks (or holds empty), each with
    the keys that name it: ``{"PD_KEY": ["environments.prod.pagerduty.routing_key_env"]}``.
    """
    unset: dict[str, list[str]] = {}
    for ref in env_var_refs(config):
        if not environ.get(ref.name):
            unset.setdefault(ref.name, []).append(ref.where)
    return unset


def unset_env_warnings(config: Config, environ: Mapping[str, str]) -> list[str]:
    """One line per unset variable the config names: ``warning``-worthy, not an error (a
    probe or a page needs it only when it runs, which is when its absence would show)."""
    return [
        f"{config.source}: environment variable {name} is not set (named by {', '.join(where)})"
        for name, where in unset_env_vars(config, environ).items()
    ]


def _walk(model: BaseModel, path: tuple[str | int, ...]) -> Iterator[EnvVarRef]:
    for field, info in type(model).model_fields.items():
        value = getattr(model, field)
        where = (*path, info.alias or field)
        if _ENV_VALIDATOR in info.metadata:
            if isinstance(value, str):
                yield EnvVarRef(value, _dotted(where))
            continue
        yield from _values(info.annotation, value, where)


def _values(annotation: Any, value: Any, where: tuple[str | int, ...]) -> Iterator[EnvVarRef]:
    """Walk ``value`` typed ``annotation``: models, tuples, mappings and EnvVarName leaves."""
    if isinstance(value, BaseModel):
        yield from _walk(value, where)
    elif isinstance(value, str):
        if _is_env_var_name(annotation):
            yield EnvVarRef(value, _dotted(where))
    elif isinstance(value, Mapping):
        inner = _argument(annotation, 1)
        for key, item in value.items():
            yield from _values(inner, item, (*where, str(key)))
    elif isinstance(value, tuple | list):
        inner = _argument(annotation, 0)
        for index, item in enumerate(value):
            yield from _values(inner, item, (*where, index))


def _dotted(where: tuple[str | int, ...]) -> str:
    """``("probes", "cmd", "env", 0)`` -> ``probes.cmd.env[0]``, as config errors write it."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _is_env_var_name(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _ENV_VALIDATOR in get_args(annotation)[1:]
    return any(_is_env_var_name(arg) for arg in get_args(annotation))  # X | None


def _argument(annotation: Any, index: int) -> Any:
    """``tuple[X, ...]`` -> X (index 0), ``dict[K, V]`` -> V (index 1); else Any."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):  # ``tuple[X, ...] | None``
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = options[0] if len(options) == 1 else Any
    args = get_args(annotation)
    if len(args) > index:
        return args[index]
    return args[0] if args else Any
