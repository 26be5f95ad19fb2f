"""Import a team's Markdown runbook as a checklist, with sign-offs, probes and rollback to review.

``deploybot checklist import RUNBOOK.md`` and environments whose checklist is a Markdown file
come through :func:`import_runbook`. The Markdown is read through markdown-it-py's syntax tree
(so a ``# comment`` inside a fenced block is never a heading):

- headings that directly own checkbox items become sections, titled by their heading path
  below the document title ("Pre-Deployment / Security");
- ``- [ ]`` / ``- [x]`` items become checklist items, nested ones their children; a plain
  parent item (``- **Database**``) over checkbox items becomes an item holding them;
- tables with a Role column and lines like ``- [ ] QA Lead: ____ Date: ____`` give sign-offs;
- commands in fenced code and in items' inline code give suggested probes and rollback
  targets (see :mod:`bot.runbook.commands`), which stay suggestions until someone copies them
  into ``deploybot.yaml``; an item links the probe suggested from its own code by name;
- ``<!-- probe: api-health -->`` on an item's line links it to that configured probe.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from operator import attrgetter, itemgetter
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.domain.checklist import Checklist, ChecklistItem, Section, SignOffLine
from bot.runbook.commands import (
    Findings,
    SuggestedProbe,
    SuggestedRollback,
    SuggestedStep,
    name_probes,
    scan_script,
)

__all__ = [
    "RunbookImport",
    "SuggestedProbe",
    "SuggestedRollback",
    "checklist_from_markdown",
    "import_runbook",
]

_YAML_HEADER = """\
# Checklist imported from a Markdown runbook by `deploybot checklist import`. It loads as it
# is: point an environment's `checklist` at this file. `deploybot config check` then lists
# what it suggests that deploybot.yaml does not have yet:
# - signoffs: the runbook's sign-off roles; declare them under the environment's `signoffs`.
# - suggested_probes: define a probe of the same name under `probes` (fill in every $VAR and
#   $(...) first: deploybot never runs a shell to resolve them); the items whose `probe` names
#   it are ticked by it from then on, and by hand until then.
# - suggested_rollback (suggested_deploy_steps): copy those you want under `rollback` (`deploy`).
"""

_CHECKBOX = re.compile(r"\[[ xX]\](?=\s|$)(.*)", re.DOTALL)
# "Lead Engineer: ______ Date: ____": a role, a colon, then only blanks and labelled blanks.
# The role (and a label) may be in bold, italics or inline code, the colon inside or after:
# "**Lead Engineer**: ____", "**Lead Engineer:** ____", "_QA Lead_: ____", "`DBA`: ____".
_ROLE = r"[^:_`*\[\]]{1,60}?"
_SIGNOFF = re.compile(
    rf"(?:(?P<mark>\*{{1,3}}|_{{1,3}}|`)\s*(?P<marked>{_ROLE})\s*(?P<inside>:)?(?P=mark)"
    rf"|(?P<role>{_ROLE}))"
    r"\s*(?(inside)|:)"
    r"(?P<blanks>(?:\s|\\?_)*"
    r"(?:(?:[*_`]{1,3})?[A-Za-z][A-Za-z ]{0,30}:(?:[*_`]{1,3})?(?:\s|\\?_)*)*)"
)
# "- [ ] API is healthy <!-- probe: api-health -->": the item is ticked by that probe.
_PROBE_LINK = re.compile(r"<!--\s*probe:\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*-->")
_SHELL_LANGUAGES = {"bash", "sh", "shell", "zsh", "ksh", "console", "shell-session", "terminal"}


@dataclass(frozen=True)
class RunbookImport:
    """A runbook read as a checklist, plus what was suggested and what was skipped.

    Attributes:
        checklist: The checklist, numbered (section slugs and item path ids filled in).
        signoffs: Sign-off role names in document order, without duplicates.
        probes: Probes suggested from recognised commands, in document order.
        rollback: Rollback targets suggested from ``kubectl rollout undo``.
        skipped: Notes on what was seen and not imported ("line 57: ...").
        item_probes: The name of the probe suggested from an item's own code (its inline code,
            or a fenced block under it), by item id, for items without a probe link.
    """

    checklist: Checklist
    signoffs: tuple[str, ...]
    probes: tuple[SuggestedProbe, ...]
    rollback: tuple[SuggestedRollback, ...]
    skipped: tuple[str, ...]
    item_probes: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[SuggestedStep, ...] = ()  # deploy steps, for an environment's `deploy:`

    def to_json(self) -> dict[str, Any]:
        """The import as JSON-ready data: checklist, sign-offs, probes and rollback."""
        return {
            "title": self.checklist.title,
            "sections": [
                {"title": s.title, "items": [self._item_json(i) for i in s.items]}
                for s in self.checklist.sections
            ],
            "signoffs": [{"role": role} for role in self.signoffs],
            "probes": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "target": p.target,
                    "source_line": p.source_line,
                    "spec": copy.deepcopy(p.spec),
                    "unresolved": list(p.unresolved),
                }
                for p in self.probes
            ],
            "rollback": [r.to_json() for r in self.rollback],
            "deploy_steps": [step.to_json() for step in self.steps],
        }

    def _item_json(self, item: ChecklistItem) -> dict[str, Any]:
        return {
            "text": item.text,
            "children": [self._item_json(c) for c in item.children],
            "probe": item.probe or self.item_probes.get(item.id),
        }

    def _item_yaml(self, item: ChecklistItem) -> dict[str, Any]:
        data: dict[str, Any] = {"text": item.text}
        probe = item.probe or self.item_probes.get(item.id)
        if probe:
            data["probe"] = probe
        if item.children:
            data["children"] = [self._item_yaml(c) for c in item.children]
        return data

    def to_yaml(self) -> str:
        """A checklist YAML file that loads as it is, the suggestions in keys of their own.

        Items link the probe suggested from their own code by its name in
        ``suggested_probes``; such a link is live once ``deploybot.yaml`` defines a probe of
        that name (see :mod:`bot.config.checklist_files`).
        """
        document: dict[str, Any] = {
            "title": self.checklist.title,
            "sections": [
                {"title": s.title, "items": [self._item_yaml(i) for i in s.items]}
                for s in self.checklist.sections
            ],
            "signoffs": list(self.signoffs),
            "suggested_probes": [_probe_yaml(p) for p in self.probes],
            "suggested_rollback": [
                {"line": r.source_line, "rollback": r.spec} for r in self.rollback
            ],
        }
        if self.steps:  # only then: most runbooks deploy by hand
            document["suggested_deploy_steps"] = [
                {"line": x.source_line, "step": x.spec} for x in self.steps
            ]
        # A wide line keeps each command on one line, as in the runbook.
        body = yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
        )
        return _YAML_HEADER + body

    def summary_lines(self) -> list[str]:
        """What ``deploybot checklist import`` reports: counts, skipped notes, then each probe."""
        by_kind = Counter(p.kind for p in self.probes)
        kinds = ", ".join(f"{kind} {count}" for kind, count in by_kind.items())
        roles = ", ".join(self.signoffs)
        lines = [
            f"{self.checklist.title}: {_count(len(self.checklist.sections), 'section')}, "
            f"{_count(self.checklist.item_count, 'item')}, "
            f"{_count(len(self.signoffs), 'sign-off')}, "
            f"{_count(len(self.probes), 'suggested probe')}",
            f"sign-off roles: {len(self.signoffs)}" + (f" ({roles})" if roles else ""),
            f"suggested probes: {len(self.probes)}" + (f" ({kinds})" if kinds else ""),
            f"suggested rollback targets: {len(self.rollback)}",
            *([f"suggested deploy steps: {len(self.steps)}"] if self.steps else []),
            *self.skipped,
        ]
        for probe in self.probes:
            line = f"line {probe.source_line}: {probe.kind} {probe.target}"
            if probe.unresolved:
                line += " — fill in: " + ", ".join(probe.unresolved)
            lines.append(line)
        return lines


def import_runbook(text: str) -> RunbookImport:
    """Read a Markdown runbook as a checklist with suggested sign-offs, probes and rollback.

    Never raises: whatever cannot be read is left out, and noted in ``skipped`` where it
    looked like something meant to be imported.

    Args:
        text: The runbook's Markdown.

    Returns:
        The import; an empty text gives an empty checklist titled "Checklist".
    """
    reader = _RunbookReader(SyntaxTreeNode(_parser().parse(text)))
    reader.read()
    checklist = Checklist(
        title=reader.title,
        sections=tuple(
            Section(title=title, items=tuple(_to_item(d) for d in drafts))
            for title, drafts in reader.sections
        ),
        signoffs=tuple(SignOffLine(role=role, line=line) for role, line in reader.signoff_lines),
    ).numbered()
    # A parent's inline code is read after its nested items: restore document order.
    probes = name_probes(sorted(reader.findings.probes, key=attrgetter("source_line")))
    names = {id(before): after.name for before, after in probes}
    drafts = [d for _, section in reader.sections for top in section for d in top.walk()]
    item_probes = {
        item.id: names[id(draft.probe)]
        for draft, (_, item) in zip(drafts, checklist.walk(), strict=True)
        if draft.probe is not None and not item.probe
    }
    return RunbookImport(
        checklist=checklist,
        signoffs=reader.signoffs(),
        probes=tuple(after for _, after in probes),
        rollback=tuple(reader.findings.rollback),
        steps=tuple(reader.findings.steps),
        skipped=tuple(
            f"line {n}: {note}" for n, note in sorted(reader.findings.notes, key=itemgetter(0))
        ),
        item_probes=item_probes,
    )


def checklist_from_markdown(text: str) -> Checklist:
    """The checklist of a Markdown runbook (for environments whose checklist is Markdown).

    Args:
        text: The runbook's Markdown.

    Returns:
        ``import_runbook(text).checklist``.
    """
    return import_runbook(text).checklist


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@dataclass
class _Draft:
    """An item while the tree is read; ChecklistItem is frozen, so it is built at the end.

    ``link`` is the probe its ``<!-- probe: name -->`` comment names; ``probe`` the first
    probe suggested from its own code.
    """

    text: str
    children: list[_Draft]
    probe: SuggestedProbe | None
    link: str | None = None

    def walk(self) -> list[_Draft]:
        return [self, *(d for c in self.children for d in c.walk())]


class _RunbookReader:
    """One pass over the syntax tree, in document order."""

    def __init__(self, root: SyntaxTreeNode) -> None:
        self._root = root
        self.title_heading = next(
            (n for n in root.children if n.type == "heading" and n.tag == "h1"), None
        )
        self.title = (_plain(self.title_heading) if self.title_heading else "") or "Checklist"
        self.sections: list[tuple[str, list[_Draft]]] = []
        self.findings = Findings()
        self.signoff_lines: list[tuple[str, int]] = []  # (role, line), every one
        self._path: list[tuple[int, str]] = []  # (level, title) of the headings above
        self._items: list[_Draft] | None = None  # the current heading's section, once it has one

    def read(self) -> None:
        for node in self._root.children:
            if node.type == "heading":
                self._heading(node)
                continue
            items = self._items_in(node)
            if items:
                if self._items is None:
                    self._items = []
                    self.sections.append((self._section_title(), self._items))
                self._items.extend(items)

    def signoffs(self) -> tuple[str, ...]:
        unique: dict[str, str] = {}
        for role, _ in self.signoff_lines:
            unique.setdefault(role.casefold(), role)
        return tuple(unique.values())

    def _heading(self, node: SyntaxTreeNode) -> None:
        level = int(node.tag[1:])
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        if node is self.title_heading:
            self._path.clear()
        else:
            self._path.append((level, _plain(node)))
        self._items = None

    def _section_title(self) -> str:
        return " / ".join(title for _, title in self._path if title) or self.title

    def _items_in(self, node: SyntaxTreeNode) -> list[_Draft]:
        """Items in a block, recording sign-offs, probes and notes met on the way."""
        if node.type in ("bullet_list", "ordered_list"):
            return [draft for item in node.children for draft in self._list_item(item)]
        if node.type == "blockquote":
            return [draft for child in node.children for draft in self._items_in(child)]
        if node.type in ("fence", "code_block"):
            self._code(node)
        elif node.type == "table":
            self._table(node)
        return []

    def _list_item(self, node: SyntaxTreeNode) -> list[_Draft]:
        blocks = node.children
        inline = _inline(blocks[0]) if blocks and blocks[0].type == "paragraph" else None
        if inline is None:
            return [draft for block in blocks for draft in self._items_in(block)]
        checkbox = _CHECKBOX.match(inline.content)
        link = _PROBE_LINK.search(inline.content)
        text = _collapse(_PROBE_LINK.sub(" ", checkbox.group(1))) if checkbox else ""
        if checkbox and self._take_signoff(text, blocks[1:], _line(node)):
            text = ""  # nested items under a sign-off line still count
        nested: list[_Draft] = []
        fenced: list[SuggestedProbe] = []  # probes of code blocks right under the item
        for block in blocks[1:]:
            if block.type in ("fence", "code_block"):
                fenced += self._code(block)
            else:
                nested += self._items_in(block)
        if not checkbox and nested:
            # A plain parent ("- **Database**") over checkbox items.
            text = _collapse(_PROBE_LINK.sub(" ", _plain(inline)))
        if not text:  # also a plain bullet ("- Database down or unreachable"): not an item
            return nested
        probe = self._inline_probe(inline, _line(node)) or next(iter(fenced), None)
        return [_Draft(text, nested, probe, link[1] if link else None)]

    def _take_signoff(self, text: str, nested_blocks: list[SyntaxTreeNode], line: int) -> bool:
        """Record ``text`` as a sign-off role if it is one ("QA Lead: ____ Date: ____")."""
        signoff = _SIGNOFF.fullmatch(text)
        # "Reviewers:" over nested items is an item grouping them, not a blank to sign.
        has_nested = any(b.type in ("bullet_list", "ordered_list") for b in nested_blocks)
        if signoff is None or ("_" not in signoff["blanks"] and has_nested):
            return False
        role = (signoff["marked"] or signoff["role"]).strip()
        if role:  # "** **: ____" names nobody: a blank line, left out
            self.signoff_lines.append((role, line))
        return True

    def _inline_probe(self, inline: SyntaxTreeNode, line: int) -> SuggestedProbe | None:
        probe = None
        for node in inline.walk():
            if node.type == "code_inline":
                findings = scan_script(node.content, line)
                self.findings.extend(findings)
                probe = probe or next(iter(findings.probes), None)
        return probe

    def _code(self, node: SyntaxTreeNode) -> list[SuggestedProbe]:
        """Scan a code block for commands; returns the probes it suggests."""
        line = _line(node)
        if node.type == "code_block":
            kind, findings = "indented code block", scan_script(node.content, line)
        else:
            language = (node.info.split() or [""])[0].lower()
            if language and language not in _SHELL_LANGUAGES:
                self.findings.notes.append((line, f"fenced {language} block not read as commands"))
                return []
            kind, findings = "fenced code block", scan_script(node.content, line + 1)
        self.findings.extend(findings)
        if not findings.recognised:
            self.findings.notes.append((line, f"{kind} with no recognised command"))
        return findings.probes

    def _table(self, node: SyntaxTreeNode) -> None:
        rows = [row for part in node.children for row in part.children if row.type == "tr"]
        header = [_plain(cell).casefold() for cell in rows[0].children] if rows else []
        if "role" not in header:
            self.findings.notes.append((_line(node), "table without a Role column"))
            return
        column = header.index("role")
        for row in rows[1:]:
            cells = row.children
            role = _plain(cells[column]).strip("` ") if column < len(cells) else ""
            if role.strip("_- "):  # "____" is a blank to fill in, not a role
                self.signoff_lines.append((role, _line(row)))


def _inline(node: SyntaxTreeNode) -> SyntaxTreeNode | None:
    return next((c for c in node.children if c.type == "inline"), None)


def _plain(node: SyntaxTreeNode) -> str:
    """A node's text without emphasis markers, inline code kept in backquotes."""
    parts: list[str] = []
    for each in node.walk():
        if each.type in ("text", "html_inline"):
            parts.append(each.content)
        elif each.type == "code_inline":
            parts.append(f"{each.markup}{each.content}{each.markup}")
        elif each.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return _collapse("".join(parts))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _line(node: SyntaxTreeNode) -> int:
    return node.map[0] + 1 if node.map else 0


def _to_item(draft: _Draft) -> ChecklistItem:
    children = tuple(_to_item(c) for c in draft.children)
    return ChecklistItem(text=draft.text, probe=draft.link, children=children)


def _probe_yaml(probe: SuggestedProbe) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": probe.name,
        "line": probe.source_line,
        "command": probe.command,
    }
    if probe.unresolved:
        data["fill_in"] = list(probe.unresolved)
    data["probe"] = probe.spec
    return data


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
