"""`config check` on a config written for a test, its problems told against the file name."""

from __future__ import annotations

from pathlib import Path

from bot.config.loader import check_config

CHECKLIST = (
    "title: Deploy\nsections:\n  - title: Checks\n    items:\n      - text: Errors are low\n"
)


def located_problems(tmp_path: Path, config: str) -> list[str]:
    """Write ``config`` as ``deploybot.yaml`` beside a one-item ``checklist.yaml``; what
    ``config check`` says of it, each problem as ``deploybot.yaml:LINE: ...``."""
    path = tmp_path / "deploybot.yaml"
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    path.write_text(config)
    return [p.replace(str(path), "deploybot.yaml") for p in check_config(path)]
