"""docs/config-reference.md is generated from the config schema and cannot drift from it."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel
from typer.testing import CliRunner

from bot.cli import app
from bot.config.checklist_files import ChecklistDocument
from bot.config.reference import (
    DEFAULTS_IN_WORDS,
    DESCRIPTIONS,
    MODELS,
    PARTS,
    config_reference,
    keys,
)
from bot.config.schema import Config

DOC = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
REGENERATE = "deploybot config reference > docs/config-reference.md"


def sections(text: str) -> dict[str, str]:
    """The text under each ``<a id="...">`` anchor, up to the next one."""
    parts = re.split(r'<a id="([^"]+)"></a>', text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_committed_reference_is_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == config_reference(), f"run: {REGENERATE}"


def test_the_cli_prints_it() -> None:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.stdout == config_reference()


def test_every_key_of_every_model_is_documented_in_its_section() -> None:
    by_anchor = sections(config_reference())
    for part in PARTS:
        for page in part.pages:
            table = by_anchor[page.anchor]
            for key in keys(page.model):
                assert f"| `{key.key}` |" in table, f"{page.model.__name__}.{key.name}"
                assert key.description, f"describe {page.model.__name__}.{key.name}"
                assert key.type and "typing." not in key.type, key


def test_aliases_are_shown_as_written_in_yaml() -> None:
    monitoring = sections(config_reference())["monitoring"]
    assert "| `for` |" in monitoring and "for_" not in monitoring


def test_every_model_the_files_can_hold_is_in_the_reference() -> None:
    def reachable(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, hint in typing.get_type_hints(model).items():
            if name.startswith("_"):  # private attributes are no keys of a file
                continue
            for found in models_in(hint):
                reachable(found, seen)

    def models_in(hint: object) -> list[type[BaseModel]]:
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            return [hint]
        return [m for arg in typing.get_args(hint) for m in models_in(arg)]

    seen: set[type[BaseModel]] = set()
    reachable(Config, seen)
    reachable(ChecklistDocument, seen)
    assert seen == set(MODELS)


def test_the_tables_name_no_key_that_is_gone() -> None:
    declared = {
        (cls.__name__, name)
        for model in MODELS
        for cls in model.__mro__
        if issubclass(cls, BaseModel)
        for name in vars(cls).get("__annotations__", {})
        if name in model.model_fields
    }
    assert set(DESCRIPTIONS) <= declared, sorted(set(DESCRIPTIONS) - declared)
    assert set(DEFAULTS_IN_WORDS) <= declared, sorted(set(DEFAULTS_IN_WORDS) - declared)


def test_required_keys_and_defaults() -> None:
    by_anchor = sections(config_reference())
    assert "| `channel` | [channel](#channel) | yes |  |" in by_anchor["environment"]
    assert "| `expire_after` | [duration](#duration) |  | `1d` |" in by_anchor["environment"]
    assert (
        "| `incident_channel` | [channel](#channel) |  | the `channel` |"
        in by_anchor["environment"]
    )
    assert "| `kind` | `http` | yes |  |" in by_anchor["probe-http"]
    assert (
        "| `expect_status` | list of integers from 100 to 599 (not empty) |  | `[200]` |"
        in (by_anchor["probe-http"])
    )


def test_internal_links_lead_somewhere() -> None:
    text = config_reference()
    targets = set(re.findall(r'<a id="([^"]+)"></a>', text))
    targets |= {"-".join(h.lower().split()) for h in re.findall(r"^## (.+)$", text, re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= targets, sorted(links - targets)


# -- Settings: bot/ops/settings.py, .env.example and the README's table say the same ---------

ROOT = DOC.parent.parent
SETTING_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", re.MULTILINE)
ENV_LINE = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)
# Read by deploybot from the process environment, outside Settings (typer's envvar).
NOT_SETTINGS = {"DEPLOYBOT_LOG_FORMAT"}


def settings_defaults() -> dict[str, object]:
    from bot.ops.settings import Settings

    return {str(field.alias): field.default for field in Settings.model_fields.values()}


def shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def readme_settings() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("\n## Settings\n") :]
    table = table[: table.index("\n\n", table.index("| Variable |"))]
    return {name: cell.strip() for name, cell in SETTING_ROW.findall(table)}


def test_the_readme_settings_table_is_the_settings_with_their_defaults() -> None:
    defaults, rows = settings_defaults(), readme_settings()
    assert sorted(rows) == sorted(defaults), "one row per Settings field, and no other"
    for name, default in defaults.items():
        if default not in (None, ""):
            assert rows[name] == f"`{shown(default)}`", name


def test_env_example_names_every_setting_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    lines = dict(ENV_LINE.findall(text))
    defaults = settings_defaults()
    for name, default in defaults.items():
        assert name in lines, f".env.example lacks {name}"
        if default not in (None, ""):
            assert lines[name] == shown(default), name
    ours = {n for n in lines if n.startswith("DEPLOYBOT_")}
    assert ours <= defaults.keys() | NOT_SETTINGS, sorted(ours - defaults.keys() - NOT_SETTINGS)
