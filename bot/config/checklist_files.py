"""Checklist files as written: the checklist, plus what an import suggests for deploybot.yaml.

``deploybot checklist import`` writes a checklist file that loads as it is. Besides ``title``,
``sections`` and the runbook's ``signoffs``, it holds ``suggested_probes`` (each named; an item
such a probe would tick links to it by that name) and ``suggested_rollback``. They stay
suggestions: ``config check`` lists those deploybot.yaml does not have, and an item linking a
suggested probe the config does not define is ticked by hand until it does.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from bot.config.errors import (
    ChecklistFile,
    Problem,
    YamlSource,
    syntax_problem,
    validation_problems,
)
from bot.domain.checklist import Checklist, ChecklistItem
from bot.domain.errors import ConfigError, DeployError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_LISTED = 8
CHECKLIST_SUFFIXES = (".md", ".markdown", ".yaml", ".yml")


def read_problem(path: Path, display: str) -> tuple[str | None, Problem | None]:
    """A config or checklist file's text, or the one problem that keeps it from being read
    (not UTF-8, unreadable), located: never a traceback."""
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        byte = error.object[error.start : error.start + 1].hex()
        message = f"not UTF-8 text (byte 0x{byte}): save the file as UTF-8"
        return None, Problem(display, line, "", message)
    except OSError as error:
        return None, Problem(display, None, "", f"can't read the file: {error.strerror}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeSuggestion(_Strict):
    """A probe suggested from a command in the runbook; not active until deploybot.yaml's
    ``probes`` defines one of the same name (fill in what ``fill_in`` lists first)."""

    name: str = Field(pattern=NAME_PATTERN)
    line: int | None = None
    command: str | None = None
    fill_in: tuple[str, ...] = ()
    probe: dict[str, Any]


class RollbackSuggestion(_Strict):
    """A rollback target suggested from the runbook; copy it under an environment's
    ``rollback`` to use it."""

    line: int | None = None
    rollback: dict[str, Any]


class ChecklistDocument(Checklist):
    """A checklist file: the checklist, and the suggestions an import left in it."""

    suggested_probes: tuple[ProbeSuggestion, ...] = ()
    suggested_rollback: tuple[RollbackSuggestion, ...] = ()

    @field_validator("suggested_probes")
    @classmethod
    def _names_unique(cls, probes: tuple[ProbeSuggestion, ...]) -> tuple[ProbeSuggestion, ...]:
        names = [p.name for p in probes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise PydanticCustomError(
                "duplicate_name", "repeated names: {names}", {"names": ", ".join(repeated)}
            )
        return probes


def read_yaml_checklist(source: YamlSource, probes: Collection[str] | None) -> ChecklistFile:
    """Validate a YAML checklist file, with its suggestions.

    Args:
        source: The parsed file.
        probes: The probe names the config defines; None skips the checks that need them.

    Returns:
        The loaded file: problems (errors), warnings (suggestions not configured yet) and,
        when valid, the numbered checklist, whose items link only probes in ``probes``
        (links to suggested probes it lacks are left out) and whose sign-offs carry their
        line in the file.
    """
    data = {} if source.data is None else source.data
    document: ChecklistDocument | None = None
    found: list[Problem] = []
    try:
        document = ChecklistDocument.model_validate(data)
    except ValidationError as error:
        found = validation_problems(source, error, ChecklistDocument)
    checklist = _checklist(source, document, probes) if document is not None else None
    # An item may link a configured probe or one the file suggests (inactive until configured).
    known = None if probes is None else list(dict.fromkeys([*probes, *_suggested_names(data)]))
    loaded = ChecklistFile.checked(source, data, checklist, known)
    loaded.problems[:0] = source.scan_problems + found
    if document is not None:
        loaded.warnings += _suggestion_warnings(source, document, probes)
    return loaded


def unasked_signoffs(
    where: str, checklist: Checklist, env_name: str, keys: Collection[str]
) -> list[Problem]:
    """The checklist's sign-off lines whose role the environment does not require, located."""
    return [
        Problem(
            where,
            line.line,
            "",
            f"sign-off '{line.role}' is not asked for in environment '{env_name}': "
            f"add it to environments.{env_name}.signoffs, or nobody signs it",
        )
        for line in checklist.signoffs_not_in(keys)
    ]


def _checklist(
    source: YamlSource, document: ChecklistDocument, probes: Collection[str] | None
) -> Checklist:
    suggested = {p.name for p in document.suggested_probes}
    inactive = set() if probes is None else suggested - set(probes)

    def item(each: ChecklistItem) -> ChecklistItem:
        return each.model_copy(
            update={
                "probe": None if each.probe in inactive else each.probe,
                "children": tuple(item(c) for c in each.children),
            }
        )

    sections = tuple(
        s.model_copy(update={"items": tuple(item(i) for i in s.items)}) for s in document.sections
    )
    signoffs = tuple(
        line.model_copy(update={"line": source.locate(("signoffs", index))[0]})
        for index, line in enumerate(document.signoffs)
    )
    return Checklist(title=document.title, sections=sections, signoffs=signoffs).numbered()


def _suggestion_warnings(
    source: YamlSource, document: ChecklistDocument, probes: Collection[str] | None
) -> list[Problem]:
    warnings = []
    suggested = document.suggested_probes
    missing = [] if probes is None else [p.name for p in suggested if p.name not in probes]
    if missing:
        listed = ", ".join(missing[:MAX_LISTED]) + (", …" if len(missing) > MAX_LISTED else "")
        warnings.append(
            source.problem(
                ("suggested_probes",),
                f"{len(missing)} suggested probe(s) not in the config: {listed}; define one "
                "under 'probes' by the same name and the items linking it are ticked by it",
            )
        )
    if document.suggested_rollback:
        lines = ", ".join(str(r.line) for r in document.suggested_rollback if r.line)
        warnings.append(
            source.problem(
                ("suggested_rollback",),
                f"{len(document.suggested_rollback)} suggested rollback target(s)"
                + (f" (runbook lines {lines})" if lines else "")
                + ": copy those you want under an environment's 'rollback', then remove this key",
            )
        )
    return warnings


def _suggested_names(data: object) -> list[str]:
    """Names of the suggested probes in raw (maybe invalid) data."""
    raw = data.get("suggested_probes") if isinstance(data, dict) else None
    entries = raw if isinstance(raw, list) else []
    return [e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def load_checklist(path: str | Path, *, probes: Collection[str] | None = None) -> Checklist:
    """Load a checklist file (``.yaml``/``.yml``, or Markdown through ``bot.runbook.parser``).

    Args:
        path: The checklist file.
        probes: The probe names items may link to; None skips that check.

    Returns:
        The checklist, numbered.

    Raises:
        ConfigError: The file is missing or invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: checklist file not found: {path.resolve()}"])
    loaded = read_checklist(path, str(path), probes)
    if loaded.checklist is None or loaded.problems:
        raise ConfigError([str(problem) for problem in loaded.problems])
    return loaded.checklist


def read_checklist(path: Path, display: str, probes: Collection[str] | None) -> ChecklistFile:
    """Load an existing checklist file; its problems are located in that file."""
    text, unreadable = read_problem(path, display)
    if text is None:
        return ChecklistFile(display, None, None, [unreadable] if unreadable else [])
    if path.suffix.lower() in (".md", ".markdown"):
        from bot.runbook.parser import checklist_from_markdown  # late: Markdown support is optional

        try:
            imported = checklist_from_markdown(text).numbered()
        except (DeployError, ValueError) as error:
            problem = Problem(display, None, "", f"cannot import the runbook: {error}")
            return ChecklistFile(display, None, None, [problem])
        data = imported.model_dump(mode="json")
        return ChecklistFile.checked(display, data, imported, probes)
    if path.suffix.lower() not in CHECKLIST_SUFFIXES:
        message = "a checklist file ends in .md, .markdown, .yaml or .yml"
        return ChecklistFile(display, None, None, [Problem(display, None, "", message)])
    try:
        source = YamlSource(display, text)
    except yaml.YAMLError as error:
        return ChecklistFile(display, None, None, [syntax_problem(display, error)])
    return read_yaml_checklist(source, probes)
