"""Times as Slack shows them: ``<!date^UNIX^{token}|fallback>``, rendered by each reader's
Slack client in their own time zone and kept current ("5 minutes ago" stays true later).

A message is drawn once and updated only when the session changes, so a time computed when
drawing ("0s ago") would freeze; Slack's date formatting does not. The fallback (shown in
notifications and by clients that cannot format dates) is the UTC time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WHEN = "{date_short_pretty} {time}"  # "Today 14:02", "Yesterday 09:15", "Nov 23 14:02"
AGO = "{ago}"  # "5 minutes ago"
CLOCK = "{time}"  # "14:02" or "2:02 PM": where room is short and the day is plain


def clock(at: datetime | None) -> str:
    """The time of day of ``at`` (""  when unknown), in the reader's zone; "14:02 UTC" as the
    fallback."""
    return slack_date(at, CLOCK, fallback=f"{utc(at):%H:%M} UTC") if at else ""


def utc(at: datetime) -> datetime:
    """``at`` in UTC; naive datetimes are taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def slack_date(at: datetime | None, token: str = WHEN, *, fallback: str | None = None) -> str:
    """``at`` for Slack's date formatting ("" when unknown).

    Args:
        at: The moment to show.
        token: Slack's format: :data:`WHEN` for the date and time, :data:`AGO` for how long
            ago, or any of Slack's tokens.
        fallback: What clients that cannot format dates show; the UTC time by default.
    """
    if at is None:
        return ""
    moment = utc(at)
    text = fallback or f"{moment:%Y-%m-%d %H:%M} UTC"
    return f"<!date^{int(moment.timestamp())}^{token}|{text}>"


def ago(at: datetime, now: datetime) -> str:
    """How long ago ``at`` was, kept current by Slack; the fallback says it as of ``now``."""
    return slack_date(at, AGO, fallback=f"{duration(now - at)} ago")


def duration(delta: timedelta) -> str:
    """``45s``, ``12m``, ``3h 05m``, ``2d 4h``: a length of time between two known moments."""
    seconds = max(0, int(delta.total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 60:
        return f"{seconds}s"
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{days}d {hours % 24}h"
