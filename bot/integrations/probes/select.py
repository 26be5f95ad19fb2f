"""Which probes an environment runs, and which checklist items each one ticks."""

from __future__ import annotations

from bot.config.probe_specs import ProbeSpec
from bot.config.schema import Config
from bot.domain.errors import NotFound


def environment_probes(config: Config, env_name: str) -> dict[str, ProbeSpec]:
    """The probes an environment runs: its own ``probes`` plus those its checklist links.

    Each probe appears once, in the order the config file's ``probes`` section declares
    them (so a report lists them the same way whichever part of the file named them).

    Args:
        config: The loaded configuration.
        env_name: The environment's name.

    Returns:
        Probe name to its definition; empty when the environment runs none.

    Raises:
        NotFound: No such environment, or a name the config does not define (which
            ``load_config`` already refuses).
        ConfigError: The environment's checklist cannot be loaded.
    """
    wanted = set(config.environment(env_name).probes) | set(_checklist_links(config, env_name))
    unknown = sorted(wanted - set(config.probes))
    if unknown:
        raise NotFound(f"Environment '{env_name}' uses undefined probes: {', '.join(unknown)}.")
    return {name: spec for name, spec in config.probes.items() if name in wanted}


def item_links(config: Config, env_name: str) -> dict[str, list[str]]:
    """The checklist items each of the environment's probes ticks.

    Args:
        config: The loaded configuration.
        env_name: The environment's name.

    Returns:
        For every probe ``environment_probes`` returns (same order), the ids of the
        checklist items linked to it, in checklist order; empty for a probe that only
        the environment's ``probes`` names.

    Raises:
        NotFound: No such environment.
        ConfigError: The environment's checklist cannot be loaded.
    """
    links = _checklist_links(config, env_name)
    return {name: links.get(name, []) for name in environment_probes(config, env_name)}


def _checklist_links(config: Config, env_name: str) -> dict[str, list[str]]:
    """Probe name to the ids of the checklist items linked to it (linked probes only)."""
    links: dict[str, list[str]] = {}
    for _section, item in config.checklist(env_name).walk():
        if item.probe:
            links.setdefault(item.probe, []).append(item.id)
    return links
