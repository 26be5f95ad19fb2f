"""Finding configuration problems and locating them in the YAML source: file, line, YAML path.

PyYAML's node tree keeps each node's position, so a pydantic error ``loc`` (keys and indexes)
is walked down the tree to the line a person should edit. Checks that span files (gates naming
sections, items linking probes) read the raw data: they report even beside other errors.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.config.probe_specs import SECRET_ADVICE, looks_like_secret
from bot.domain.checklist import Checklist, Section, slugify

Loc = Sequence[int | str]

# Keys whose value pydantic puts into ``loc`` as the tag of a discriminated union.
_TAG_KEYS = ("kind", "check")
_MAPPING_ERRORS = {"dict_type", "model_type", "model_attributes_type"}
_LIST_ERRORS = {"tuple_type", "list_type"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, where it is and what to do about it."""

    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class YamlSource:
    """A parsed YAML file: its data, and its node tree for finding where things are."""

    def __init__(self, name: str, text: str) -> None:
        """Parse ``text``.

        Args:
            name: The file name to show in problems.
            text: The YAML text.

        Raises:
            yaml.YAMLError: The text is not valid YAML (see ``syntax_problem``).
        """
        self.name = name
        loader = yaml.SafeLoader(text)
        try:
            self.root: yaml.Node | None = loader.get_single_node()
            # Scanned before constructing: construction flattens merge keys in place.
            self.scan_problems = list(self._scan()) if self.root is not None else []
            self.data: Any = loader.construct_document(self.root) if self.root is not None else None
        finally:
            loader.dispose()

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem at the YAML path ``loc``, on the line where that path is."""
        line, path = self.locate(loc)
        return Problem(self.name, line, path, message)

    def locate(self, loc: Loc) -> tuple[int | None, str]:
        """The 1-based line and the display path (``environments.prod.signoffs[1].by``).

        Parts of ``loc`` that are not in the YAML (union tags, ``[key]``) are skipped; parts
        past the end of what exists (a missing key) stay in the path at the parent's line.
        """
        node = self.root
        line = _line(node) if node is not None else None
        parts: list[int | str] = []
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                pair = next((p for p in node.value if str(p[0].value) == str(part)), None)
                if pair is not None:
                    parts.append(part)
                    line, node = _line(pair[0]), pair[1]
                    continue
                if part == "[key]" or _is_tag(node, part):
                    continue
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                parts.append(part)
                node = node.value[part]
                line = _line(node)
                continue
            parts.append(part)
            node = None
        return line, format_path(parts)

    def _scan(self) -> Iterator[Problem]:
        """Duplicate keys (PyYAML keeps the last silently) and secrets written in the file."""
        for path, node in _walk(self.root, (), set()):
            if isinstance(node, yaml.MappingNode):
                first: dict[str, int] = {}
                for key, _ in node.value:
                    if key.tag == "tag:yaml.org,2002:merge":
                        continue
                    name = str(key.value)
                    if name in first:
                        message = f"duplicate key '{name}' (first at line {first[name]})"
                        yield Problem(self.name, _line(key), format_path(path), message)
                    first.setdefault(name, _line(key))
            elif node.tag == "tag:yaml.org,2002:str" and isinstance(node.value, str):
                kind = looks_like_secret(node.value)
                if kind:
                    message = f"this looks like {kind}; {SECRET_ADVICE}"
                    yield Problem(self.name, _line(node), format_path(path), message)


def syntax_problem(name: str, error: yaml.YAMLError) -> Problem:
    """A YAML syntax error at the line where the parser gave up (and where the construct began)."""
    mark = getattr(error, "problem_mark", None)
    start = getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    context = getattr(error, "context", None) or ""
    if context and start is not None and start.line + 1 != line:
        context += f" (from line {start.line + 1})"
    what = getattr(error, "problem", None) or str(error)
    detail = f"{context}, {what}" if context else what
    return Problem(name, line, "", f"YAML syntax error: {detail}")


def validation_problems(
    source: YamlSource, error: ValidationError, model: type[BaseModel]
) -> list[Problem]:
    """Every error of a pydantic validation, located in ``source`` and reworded for people.

    Args:
        source: The YAML the validated data came from.
        error: The validation error.
        model: The model that was validated (to list the keys it allows).

    Returns:
        One problem per pydantic error.
    """
    details = error.errors(include_url=False)
    failed = [detail["loc"] for detail in details]
    problems = []
    for detail in details:
        loc = tuple(detail["loc"])
        kind = detail["type"]
        if kind == "default_factory_not_called":
            continue  # a default computed from a field that failed: that field's error says it
        if kind == "too_short" and any(
            len(other) > len(detail["loc"]) and other[: len(detail["loc"])] == detail["loc"]
            for other in failed
        ):
            continue  # "too short" only because its invalid items were left out
        if kind == "missing":
            *parent, key = loc
            line, path = source.locate(parent)
            problems.append(Problem(source.name, line, path, f"missing required key '{key}'"))
            continue
        if kind == "extra_forbidden":
            allowed = allowed_keys(model, detail["loc"][:-1])
            message = "unknown key" + _suggestion(str(loc[-1]), allowed)
        elif kind == "union_tag_invalid":
            ctx = detail.get("ctx", {})
            tag_key = _unquote(ctx.get("discriminator", "kind"))
            loc = (*loc, tag_key)
            tags = _unquote(ctx.get("expected_tags"))
            message = f"unknown {tag_key} '{ctx.get('tag')}' ({tag_key}s: {tags})"
        elif kind == "union_tag_not_found":
            tag_key = _unquote(detail.get("ctx", {}).get("discriminator", "kind"))
            message = f"missing required key '{tag_key}'"
        elif kind in _MAPPING_ERRORS:
            message = "expected a mapping (key: value)"
        elif kind in _LIST_ERRORS:
            message = "expected a list"
        elif kind in ("too_short", "string_too_short"):
            least = detail.get("ctx", {}).get("min_length", 1)
            message = "must not be empty" if least == 1 else f"needs at least {least} items"
        else:
            message = detail["msg"].removeprefix("Value error, ")
        problems.append(source.problem(loc, message))
    return problems


@dataclass
class ChecklistFile:
    """A checklist file as loaded, with what it refers to and what is wrong with it.

    Attributes:
        where: The file (a ``YamlSource`` to locate problems by line, or its name).
        checklist: The numbered checklist, or None when the file is invalid.
        section_ids: The sections' ids (also worked out when the file is invalid).
        problems: Everything wrong in the file itself.
        gate_signoffs: Sign-off keys that section gates wait for, with their location;
            whether they exist depends on the environment using the checklist.
    """

    where: YamlSource | str
    checklist: Checklist | None
    section_ids: tuple[str, ...] | None
    problems: list[Problem] = field(default_factory=list)
    gate_signoffs: list[tuple[Loc, str]] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # what loads but deserves a look

    @classmethod
    def checked(
        cls,
        where: YamlSource | str,
        data: Any,
        checklist: Checklist | None,
        probes: Collection[str] | None,
    ) -> ChecklistFile:
        """Cross-check a checklist's raw data: section gates and the probes items link to.

        Args:
            where: The file the data came from.
            data: The checklist as plain data (it may be invalid).
            checklist: The validated, numbered checklist, or None.
            probes: The probe names defined in the config; None skips that check.

        Returns:
            The loaded file with the problems found.
        """
        sections = data.get("sections") if isinstance(data, dict) else None
        if not isinstance(sections, list):
            return cls(where, checklist, None)
        ids = tuple(s.id for s in (checklist or _skeleton(sections)).sections)
        loaded = cls(where, checklist, ids)
        for index, section in enumerate(sections):
            if not isinstance(section, dict):
                continue
            loc = ("sections", index)
            gate = section.get("gate")
            gate = gate if isinstance(gate, dict) else {}
            for name in _strings(gate.get("after")):
                message = unknown_names([name], ids, "section", "sections")
                if name == ids[index]:
                    message = "a section cannot wait for itself"
                if message:
                    loaded.problems.append(_at(where, (*loc, "gate", "after"), message))
            for key in _strings(gate.get("signoffs")):
                loaded.gate_signoffs.append(((*loc, "gate", "signoffs"), key))
            for item_loc, probe in _item_probes(section.get("items"), (*loc, "items")):
                message = unknown_names([probe], probes, "probe", "probes")
                if message:
                    loaded.problems.append(_at(where, (*item_loc, "probe"), message))
        return loaded


def env_gate_problems(
    source: YamlSource, env_loc: tuple[str, str], raw: dict[Any, Any], checklist: ChecklistFile
) -> list[Problem]:
    """An environment's gates, and its checklist's section gates, name things that exist.

    Args:
        source: The config file.
        env_loc: ``("environments", name)``.
        raw: The environment's raw data (it may be invalid).
        checklist: The environment's checklist file.

    Returns:
        Unknown section ids and sign-off keys, located.
    """
    signoffs = raw.get("signoffs", [])
    keys = None
    if isinstance(signoffs, list):
        roles = [s.get("role") for s in signoffs if isinstance(s, dict)]
        keys = [slugify(role) for role in roles if isinstance(role, str)]
    problems = []
    gates = raw.get("gates")
    for phase in ("deploy", "complete"):
        gate = gates.get(phase) if isinstance(gates, dict) else None
        if not isinstance(gate, dict):
            continue
        for name, known_names, what in (
            ("after", checklist.section_ids, "section"),
            ("signoffs", keys, "sign-off"),
        ):
            message = unknown_names(_strings(gate.get(name)), known_names, what, what + "s")
            if message:
                problems.append(source.problem((*env_loc, "gates", phase, name), message))
    for loc, key in checklist.gate_signoffs if keys is not None else ():
        if keys is not None and key not in keys:
            message = (
                f"sign-off '{key}' is not required in environment '{env_loc[1]}' "
                f"({known(keys, 'sign-offs')})"
            )
            problems.append(_at(checklist.where, loc, message))
    return problems


def unknown_names(
    names: Sequence[str], known_names: Collection[str] | None, kind: str, plural: str
) -> str | None:
    """``"unknown role 'devops' (roles: deployers, oncall)"``, or None if all are known."""
    if known_names is None:
        return None
    unknown = [name for name in dict.fromkeys(names) if name not in known_names]
    if not unknown:
        return None
    listed = ", ".join(f"'{name}'" for name in unknown)
    return (
        f"unknown {kind if len(unknown) == 1 else plural} {listed} ({known(known_names, plural)})"
    )


def known(names: Collection[str], plural: str) -> str:
    """``"roles: a, b"``, or ``"no roles defined"``."""
    return f"{plural}: {', '.join(names)}" if names else f"no {plural} defined"


def _skeleton(sections: list[Any]) -> Checklist:
    """Just enough of an invalid checklist to number its sections the same way."""
    skeleton = []
    for section in sections:
        raw = section if isinstance(section, dict) else {}
        title, section_id = raw.get("title"), raw.get("id")
        skeleton.append(
            Section(
                title=title if isinstance(title, str) and title else "section",
                id=section_id if isinstance(section_id, str) else "",
            )
        )
    return Checklist(sections=tuple(skeleton)).numbered()


def _item_probes(items: object, loc: tuple[int | str, ...]) -> Iterator[tuple[Loc, str]]:
    for index, item in enumerate(items if isinstance(items, list) else ()):
        if isinstance(item, dict):
            if isinstance(item.get("probe"), str):
                yield (*loc, index), item["probe"]
            yield from _item_probes(item.get("children"), (*loc, index, "children"))


def _strings(values: object) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def _at(where: YamlSource | str, loc: Loc, message: str) -> Problem:
    if isinstance(where, YamlSource):
        return where.problem(loc, message)
    return Problem(where, None, format_path(loc), message)


def allowed_keys(model: type[BaseModel], loc: Loc) -> tuple[str, ...]:
    """The keys allowed at ``loc`` below ``model`` (a pydantic ``loc``, tags included)."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return ()
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tuple(field.alias or name for name, field in tp.model_fields.items())
    return ()


def format_path(parts: Loc) -> str:
    """``("environments", "prod", "signoffs", 1, "by")`` -> ``environments.prod.signoffs[1].by``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _step(tp: Any, part: int | str) -> Any:
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        # Pydantic names the chosen member by its tag (a ``Literal`` default).
        for member in typing.get_args(tp):
            member = _strip(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                fields = member.model_fields
                if any(k in fields and fields[k].default == part for k in _TAG_KEYS):
                    return member
        return None
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is tuple:
        return typing.get_args(tp)[0]
    return None


def _strip(tp: Any) -> Any:
    """Peel ``Annotated`` and ``X | None`` down to the type that has the fields."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1:
                tp = rest[0]
                continue
        return tp


def _suggestion(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (allowed: {', '.join(allowed)})" if allowed else ""


def _unquote(tags: object) -> str:
    return str(tags).replace("'", "")


def _is_tag(node: yaml.MappingNode, part: int | str) -> bool:
    return any(
        str(key.value) in _TAG_KEYS and isinstance(value, yaml.ScalarNode) and value.value == part
        for key, value in node.value
    )


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _walk(
    node: yaml.Node | None, path: tuple[int | str, ...], seen: set[int]
) -> Iterator[tuple[tuple[int | str, ...], yaml.Node]]:
    if node is None or id(node) in seen:  # aliases may point back up the tree
        return
    yield path, node
    if isinstance(node, yaml.MappingNode):
        seen = seen | {id(node)}
        for key, value in node.value:
            yield from _walk(key, path, seen)
            yield from _walk(value, (*path, str(key.value)), seen)
    elif isinstance(node, yaml.SequenceNode):
        seen = seen | {id(node)}
        for index, item in enumerate(node.value):
            yield from _walk(item, (*path, index), seen)
