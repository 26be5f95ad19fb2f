"""The layers of bot/ and commands/, read from the source with ``ast``.

Layers, low to high; a module may import its own layer and the ones below it, never one
above (imports inside functions and under ``TYPE_CHECKING`` count too)::

    0  bot.domain                      the pure deploy domain
    1  bot.ops                         redact, logs, settings (not metrics: see 5)
    2  bot.runbook                     Markdown runbooks to checklists
    3  bot.config                      the YAML config (its schema reads runbooks)
    4  bot.storage                     models, repositories, unit of work, outbox, slots
    5  bot.ops.metrics                 Prometheus metrics (counts sessions from storage)
    6  bot.integrations                probes, Kubernetes, AWS, PagerDuty, rollback targets
    7  bot.rendering                   Block Kit from session state
    8  bot.app                         the application services
    9  bot.workers                     outbox worker, leader lock, scheduler, jobs
    10 bot.slack                       publishing, roles, the Bolt app
    11 commands                        the Bolt listeners
    12 bot, bot.server, bot.cli, bot.runtime   the composition root: may import anything

A module belongs to the longest entry that names it or a package above it.

Also checked: no import cycle between packages (a package here is a directory, except
``bot.ops.metrics`` and the root modules, which count on their own, as in the map), and no
module-level global is rebound at run time: no ``global`` statement, and no assignment to
an attribute of an imported module of ours (``jobs.context = ...``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("bot", "commands")

LAYERS: tuple[tuple[str, ...], ...] = (
    ("bot.domain",),
    ("bot.ops",),
    ("bot.runbook",),
    ("bot.config",),
    ("bot.storage",),
    ("bot.ops.metrics",),
    ("bot.integrations",),
    ("bot.rendering",),
    ("bot.app",),
    ("bot.workers",),
    ("bot.slack",),
    ("commands",),
    ("bot", "bot.server", "bot.cli", "bot.runtime"),
)

# Modules that count as a package of their own in the cycle check (as they do in the map).
OWN_PACKAGE = frozenset({"bot.ops.metrics", "bot.server", "bot.cli", "bot.runtime"})

# Upward imports in code being rewritten elsewhere, as (importer, imported) module names.
# Each must still be there (the test says when one is gone): empty this set as they go.
KNOWN: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def sources() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = (path, ast.parse(path.read_text("utf-8"), str(path)))
    return found


def is_package(module: str) -> bool:
    path, _ = sources()[module]
    return path.name == "__init__.py"


def ours(name: str) -> bool:
    return name.split(".")[0] in SOURCES


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports included)."""
    if not node.level:
        return node.module or ""
    package = importer if is_package(importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports() -> Iterator[Import]:
    """Every import of our own modules, anywhere in a module; ``from p import m`` names the
    module ``p.m`` when there is one."""
    modules = sources()
    for importer, (_, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if ours(alias.name):
                        yield Import(importer, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = resolve(importer, node)
                if not ours(base):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    yield Import(importer, submodule if submodule in modules else base, node.lineno)


def layer_of(module: str) -> int:
    matches = [
        (len(entry), layer)
        for layer, entries in enumerate(LAYERS)
        for entry in entries
        if module == entry or module.startswith(entry + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return max(matches)[1]


def package_of(module: str) -> str:
    if module in OWN_PACKAGE or is_package(module):
        return module
    return module.rpartition(".")[0]


def upward() -> set[tuple[str, str]]:
    return {
        (i.importer, i.imported) for i in imports() if layer_of(i.imported) > layer_of(i.importer)
    }


def test_every_module_has_a_layer() -> None:
    for module in sources():
        layer_of(module)


def test_no_import_goes_up_a_layer() -> None:
    found = [
        f"{i.importer}:{i.line} imports {i.imported} "
        f"(layer {layer_of(i.importer)} -> {layer_of(i.imported)})"
        for i in imports()
        if layer_of(i.imported) > layer_of(i.importer) and (i.importer, i.imported) not in KNOWN
    ]
    assert found == [], "\n".join(found)


def test_the_known_violations_are_still_there() -> None:
    gone = sorted(KNOWN - upward())
    assert gone == [], f"fixed, so remove from KNOWN: {gone}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the graph's components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for i in imports():
        if (i.importer, i.imported) in KNOWN:
            continue  # already reported as going up; a known edge closes a known cycle
        source, target = package_of(i.importer), package_of(i.imported)
        if source != target:
            graph.setdefault(source, set()).add(target)
    cycles = strongly_connected(graph)
    assert cycles == [], "\n".join(" <-> ".join(cycle) for cycle in cycles)


def rebinding(module: str, tree: ast.Module) -> Iterator[str]:
    """``global`` statements, and assignments to an attribute of an imported module of ours."""
    aliases: set[str] = set()
    modules = sources()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update((a.asname or a.name).split(".")[0] for a in node.names if ours(a.name))
        elif isinstance(node, ast.ImportFrom) and ours(resolve(module, node)):
            base = resolve(module, node)
            aliases.update(a.asname or a.name for a in node.names if f"{base}.{a.name}" in modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            yield f"{module}:{node.lineno} global {', '.join(node.names)}"
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            attribute_of_ours = isinstance(root, ast.Name) and root.id in aliases
            if isinstance(target, ast.Attribute) and attribute_of_ours:
                yield f"{module}:{node.lineno} sets {ast.unparse(target)}"


def test_no_module_global_is_rebound_at_run_time() -> None:
    found = [line for module, (_, tree) in sources().items() for line in rebinding(module, tree)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("global context\n", ["m:1 global context"]),
        ("from bot.workers import jobs\njobs.context = 1\n", ["m:2 sets jobs.context"]),
        (
            "import bot.workers.jobs\nbot.workers.jobs.context = 1\n",
            ["m:2 sets bot.workers.jobs.context"],
        ),
        ("import logging\nlogging.x = 1\nself_x = 1\n", []),
    ],
)
def test_the_rebinding_check_sees_what_it_should(source: str, expected: list[str]) -> None:
    assert list(rebinding("m", ast.parse(source))) == expected


def test_the_cycle_check_sees_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
