"""The benchmark scripts still import: they run outside the suite, so a renamed function
would otherwise break them unnoticed (each only defines its work until run as a script)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_a_benchmark_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = script.stem  # as the scripts import each other (benchmarks/ is on their path)
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    monkeypatch.syspath_prepend(str(script.parent))
    spec.loader.exec_module(module)  # definitions only: the work runs under __main__
    assert module.__doc__, f"{script.name} says nothing of what it measures"
