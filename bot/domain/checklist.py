"""Checklists: sections of items, optionally gated, as loaded from YAML or Markdown."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gate(_Strict):
    """What must be in before a section opens (or before a phase such as deploying starts).

    ``after`` names sections (by id) whose items must all be done or skipped; ``signoffs``
    names sign-off roles that must be signed.
    """

    after: tuple[str, ...] = ()
    signoffs: tuple[str, ...] = ()

    @property
    def is_open_always(self) -> bool:
        return not self.after and not self.signoffs


class ChecklistItem(_Strict):
    """One line to tick. ``id`` is its path ("2.5.1": section 2, item 5, child 1)."""

    text: str = Field(min_length=1)
    id: str = ""
    probe: str | None = None
    severity: Severity | None = None
    children: tuple[ChecklistItem, ...] = ()


class Section(_Strict):
    title: str = Field(min_length=1)
    id: str = ""
    gate: Gate | None = None
    items: tuple[ChecklistItem, ...] = ()


class SignOffLine(_Strict):
    """A sign-off the checklist's source asks for ("QA Lead: ____ Date: ____"), and where.

    It is no item to tick: the environment's ``signoffs`` decide who signs. A line whose role
    the environment does not require is shown as not asked for, never silently dropped.
    """

    role: str = Field(min_length=1)
    line: int | None = None


class Checklist(_Strict):
    title: str = "Checklist"
    sections: tuple[Section, ...] = ()
    signoffs: tuple[SignOffLine, ...] = ()

    @field_validator("signoffs", mode="before")
    @classmethod
    def _roles_as_text(cls, value: object) -> object:
        # ``signoffs: [QA Lead, DBA]`` is short for ``[{role: QA Lead}, {role: DBA}]``.
        if isinstance(value, list | tuple):
            return [{"role": v} if isinstance(v, str) else v for v in value]
        return value

    def signoffs_not_in(self, keys: Collection[str]) -> list[SignOffLine]:
        """The sign-off lines whose role (by key, ``slugify(role)``) is not among ``keys``."""
        return [line for line in self.signoffs if slugify(line.role) not in keys]

    def numbered(self) -> Checklist:
        """The same checklist with section slugs and item path ids filled in where missing."""
        seen: set[str] = set()
        sections = []
        for s_index, section in enumerate(self.sections, start=1):
            section_id = section.id or _unique(slugify(section.title), seen)
            seen.add(section_id)
            items = tuple(
                _number(item, f"{s_index}.{i}") for i, item in enumerate(section.items, start=1)
            )
            sections.append(section.model_copy(update={"id": section_id, "items": items}))
        return self.model_copy(update={"sections": tuple(sections)})

    def walk(self) -> Iterator[tuple[Section, ChecklistItem]]:
        """Every item, children after their parent, with its section."""
        for section in self.sections:
            for item in section.items:
                for each in walk_item(item):
                    yield section, each

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)

    @property
    def item_count(self) -> int:
        return sum(1 for _ in self.walk())


def walk_item(item: ChecklistItem) -> Iterator[ChecklistItem]:
    yield item
    for child in item.children:
        yield from walk_item(child)


def _number(item: ChecklistItem, path: str) -> ChecklistItem:
    children = tuple(_number(c, f"{path}.{i}") for i, c in enumerate(item.children, start=1))
    return item.model_copy(update={"id": item.id or path, "children": children})


def _unique(slug: str, seen: set[str]) -> str:
    candidate, n = slug, 2
    while candidate in seen:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


def slugify(text: str) -> str:
    """``"Pre-Deployment / Security"`` -> ``"pre-deployment-security"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"
