"""Loading the configuration file: read, validate, cross-check, and say where each problem is.

``load_config`` reads one YAML file (``deploybot.yaml`` or ``$DEPLOYBOT_CONFIG``), validates it
with the schema (:mod:`bot.config.schema`) and every checklist it names, and raises
``ConfigError`` listing every problem at once, each as ``file:line: yaml.path: what is
wrong``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from bot.config.change_control import skipped_section_problems
from bot.config.checklist_files import (
    CHECKLIST_SUFFIXES,
    read_checklist,
    read_problem,
    unasked_signoffs,
)
from bot.config.errors import (
    ChecklistFile,
    Problem,
    YamlSource,
    env_gate_problems,
    syntax_problem,
    validation_problems,
)
from bot.config.schema import DEFAULT_PATH, Config
from bot.domain.checklist import Checklist
from bot.domain.errors import ConfigError


def load_config(path: str | Path | None = None) -> Config:
    """Read, validate and cross-check the configuration and every checklist it names.

    Args:
        path: The YAML file; None means ``$DEPLOYBOT_CONFIG`` or ``./deploybot.yaml``.

    Returns:
        The valid configuration, its checklists loaded.

    Raises:
        ConfigError: Anything is wrong; ``problems`` lists every error with its location.
    """
    config, problems = _load(path)
    if config is None or problems:
        raise ConfigError([str(problem) for problem in problems])
    return config


def check_config(path: str | Path | None = None) -> list[str]:
    """Every problem in the configuration (``file:line: path: message``), empty if valid."""
    return [str(problem) for problem in _load(path)[1]]


def checklist_warnings(config: Config, env_name: str) -> list[str]:
    """The environment's checklist's sign-off lines that it does not ask for, located.

    Raises:
        NotFound: No such environment.
        ConfigError: The checklist cannot be loaded.
    """
    environment = config.environment(env_name)
    where = str(Path(config.source).parent / environment.checklist)
    checklist = config.checklist(env_name)
    found = unasked_signoffs(where, checklist, env_name, environment.signoff_keys)
    return [str(problem) for problem in found]


def summarize(config: Config) -> str:
    """The line ``config check`` prints for a valid file.

    Example: ``deploybot.yaml is valid: 2 environments (prod, staging), 5 roles, 7 probes,
    243 checklist items.`` (a checklist shared by environments counts once).
    """
    checklists = {id(c): c for c in (config.checklist(name) for name in config.environments)}
    items = sum(checklist.item_count for checklist in checklists.values())
    envs = ", ".join(config.environments)
    return (
        f"{config.source} is valid: {_count(len(config.environments), 'environment')} ({envs}), "
        f"{_count(len(config.roles), 'role')}, {_count(len(config.probes), 'probe')}, "
        f"{_count(items, 'checklist item')}."
    )


def _load(path: str | Path | None) -> tuple[Config | None, list[Problem]]:
    name = str(path if path is not None else os.environ.get("DEPLOYBOT_CONFIG") or DEFAULT_PATH)
    file = Path(name)
    if not file.is_file():
        return None, [Problem(name, None, "", f"config file not found: {file.resolve()}")]
    text, unreadable = read_problem(file, name)
    if text is None:
        return None, [unreadable] if unreadable else []
    try:
        source = YamlSource(name, text)
    except yaml.YAMLError as error:
        return None, [syntax_problem(name, error)]
    problems = list(source.scan_problems)
    data = source.data
    if data is None:
        return None, [
            Problem(name, None, "", "the file is empty: declare roles, probes, environments")
        ]
    if not isinstance(data, dict):
        problems.append(source.problem((), "expected a mapping with roles, probes, environments"))
        return None, problems
    roles, probes = _names(data.get("roles")), _names(data.get("probes"))
    config = None
    try:
        config = Config.model_validate(data, context={"roles": roles, "probes": probes})
    except ValidationError as error:
        problems += validation_problems(source, error, Config)

    # Checklists and gates are checked from the raw data, so that their problems show even
    # when the environment (or the checklist) has other errors.
    checklists: dict[str, Checklist] = {}
    loaded: dict[Path, ChecklistFile] = {}
    environments = data.get("environments")
    for env_name, raw in environments.items() if isinstance(environments, dict) else ():
        if not isinstance(raw, dict) or not isinstance(raw.get("checklist"), str):
            continue
        env_loc = ("environments", str(env_name))
        checklist_path = (file.resolve().parent / raw["checklist"]).resolve()
        if checklist_path.suffix.lower() not in CHECKLIST_SUFFIXES:
            message = "a checklist file ends in .md, .markdown, .yaml or .yml"
            problems.append(source.problem((*env_loc, "checklist"), message))
            continue
        if not checklist_path.is_file():
            message = f"checklist file not found: {checklist_path}"
            problems.append(source.problem((*env_loc, "checklist"), message))
            continue
        if checklist_path not in loaded:
            display = str(file.parent / raw["checklist"])
            loaded[checklist_path] = read_checklist(checklist_path, display, probes)
            problems += loaded[checklist_path].problems
        checklist_file = loaded[checklist_path]
        problems += env_gate_problems(source, env_loc, raw, checklist_file)
        problems += skipped_section_problems(source, env_loc, raw, checklist_file)
        if checklist_file.checklist is not None:
            checklists[str(env_name)] = checklist_file.checklist

    problems = _ordered(problems, name)
    if config is not None and not problems:
        config._base_dir = file.resolve().parent
        config._source = name
        config._checklists = checklists
        warnings = [str(w) for each in loaded.values() for w in each.warnings]
        for env_name in config.environments:
            warnings += checklist_warnings(config, env_name)
        config._warnings = warnings
    return config, problems


def _names(section: object) -> tuple[str, ...] | None:
    """The names a section defines; None when it is malformed (its own error says so)."""
    if section is None:
        return ()
    return tuple(str(key) for key in section) if isinstance(section, dict) else None


def _ordered(problems: list[Problem], config_name: str) -> list[Problem]:
    """Without duplicates, the config file first, each file by line."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.source != config_name, p.source, p.line or 0))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
