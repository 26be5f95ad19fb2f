"""The deployment report a team files: summary, timeline, checklist, sign-offs, incidents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.domain import DeploySession, ItemStatus
from bot.domain.checklist import walk_item
from bot.integrations.probes.analysis import analysis_of
from bot.rendering.report import INCIDENT_KINDS
from bot.storage.probe_runs import ProbeRun
from bot.storage.repositories import AuditEntry

STATUS_MARK = {
    ItemStatus.DONE: "✅",
    ItemStatus.SKIPPED: "⏭",
    ItemStatus.FAILED: "❌",
    ItemStatus.RUNNING: "⏳",
    ItemStatus.PENDING: "⬜",
}


def report_json(
    session: DeploySession, history: list[AuditEntry], probe_runs: Sequence[ProbeRun] = ()
) -> dict[str, Any]:
    """The report as plain JSON types; :func:`report_markdown` renders the same data."""
    done, total = session.totals
    return {
        "id": session.id,
        "environment": session.environment,
        "service": session.service,
        "version": session.version,
        "requester": session.requester,
        "state": session.state.value,
        "opened_at": _iso(session.opened_at),
        "closed_at": _iso(session.closed_at),
        "outcome_reason": session.outcome_reason,
        "progress": {"settled": done, "total": total},
        "emergency": session.emergency.to_json() if session.emergency else None,
        "promoted_from": session.promoted_from.to_json() if session.promoted_from else None,
        "signoffs": [
            {
                "role": rule.role,
                "by": rec.by if rec else None,
                "at": _iso(rec.at) if rec else None,
                "signers": list(rec.signers) if rec else [],
                "count": rule.count,
            }
            for rule in session.policy.signoffs
            for rec in [session.signoffs.get(rule.key)]
        ],
        "checklist": [
            {
                "section": section.title,
                "items": [
                    {
                        "id": item.id,
                        "text": item.text,
                        "status": session.progress(item.id).status.value,
                        "by": session.progress(item.id).by,
                        "at": _iso(session.progress(item.id).at),
                        "note": session.progress(item.id).reason,
                        "overrode": session.progress(item.id).overrode,
                    }
                    for top in section.items
                    for item in walk_item(top)
                ],
            }
            for section in session.checklist.sections
        ],
        "probe_runs": [
            {
                "probe": r.probe,
                "item": r.item_id,
                "kind": r.kind,
                "ok": r.ok,
                "severity": r.severity,
                "summary": r.summary,
                "duration_ms": r.duration_ms,
                "at": _iso(r.at),
            }
            | _analysis_json(r)
            for r in probe_runs
        ],
        "timeline": [_entry_json(e) for e in history],
        "incidents": [_entry_json(e) for e in history if e.kind in INCIDENT_KINDS],
    }


def report_markdown(
    session: DeploySession, history: list[AuditEntry], probe_runs: Sequence[ProbeRun] = ()
) -> str:
    data = report_json(session, history, probe_runs)
    title = " ".join(p for p in (session.environment, session.service, session.version) if p)
    done, total = session.totals
    urgent = "EMERGENCY " if session.emergency else ""
    lines = [
        f"# {urgent}Deployment report #{session.id}: {title}",
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        f"| Environment | {session.environment} |",
        f"| Service | {session.service or '-'} |",
        f"| Version | {session.version or '-'} |",
        f"| Requested by | {session.requester} |",
        f"| Started | {_when(session.opened_at)} |",
        f"| Ended | {_when(session.closed_at)} |",
        f"| Outcome | {session.state.label}"
        + (f": {_cell(session.outcome_reason)}" if session.outcome_reason else "")
        + " |",
        f"| Checklist | {done}/{total} items done or skipped |",
        *_change_control_rows(session),
        "",
        "## Sign-offs",
        "",
        "| Role | Name | Date |",
        "|---|---|---|",
    ]
    for s in data["signoffs"]:
        lines.append(f"| {s['role']} | {s['by'] or '(missing)'} | {s['at'] or ''} |")
    lines += ["", "## Checklist", ""]
    for section in data["checklist"]:
        lines.append(f"### {section['section']}")
        lines.append("")
        for item in section["items"]:
            mark = STATUS_MARK[ItemStatus(item["status"])]
            who = f" — {item['by']} at {item['at']}" if item["by"] else ""
            note = f" ({item['note']})" if item["note"] else ""
            if item["overrode"]:
                note += f" **overrode a failed critical probe: {item['overrode']}**"
            depth = "  " * (item["id"].count(".") - 1)
            lines.append(f"{depth}- {mark} {item['id']} {item['text']}{note}{who}")
        lines.append("")
    lines += ["## Probe results", ""]
    lines += _probe_table(probe_runs) or ["No probe ran."]
    lines += _analyses(data["probe_runs"])
    lines += ["", "## Incidents and rollback", ""]
    lines += [_timeline_line(e) for e in data["incidents"]] or ["None."]
    lines += ["", "## Timeline", ""]
    lines += [_timeline_line(e) for e in data["timeline"]]
    return "\n".join(lines) + "\n"


def _change_control_rows(session: DeploySession) -> list[str]:
    rows = []
    if session.emergency is not None:
        e = session.emergency
        rows.append(f"| Emergency | by {e.by} at {_when(e.at)}: {_cell(e.reason)} |")
        rows.append(f"| Skipped | {_cell('; '.join(e.skipped) or 'nothing')} |")
        retro = (
            f"outstanding ({e.retrospective.role})"
            if e.outstanding
            else f"signed by {e.retrospective_by} at {_when(e.retrospective_at)}"
        )
        rows.append(f"| Retrospective | {_cell(retro)} |")
    if session.promoted_from is not None:
        p = session.promoted_from
        rows.append(
            f"| Promoted from | {p.environment} deploy #{p.session_id}, completed "
            f"{_when(p.completed_at)} |"
        )
    return rows


def _probe_table(runs: Sequence[ProbeRun]) -> list[str]:
    """One row per probe: how often it ran, how often it failed, and its last result."""
    by_probe: dict[str, list[ProbeRun]] = {}
    for run in runs:
        by_probe.setdefault(run.probe, []).append(run)
    if not by_probe:
        return []
    rows = ["| Probe | Runs | Failed | Last result | At |", "|---|---|---|---|---|"]
    for name, each in by_probe.items():
        last = each[-1]
        mark = "✅" if last.ok else f"❌ ({last.severity})"
        failed = sum(not r.ok for r in each)
        rows.append(
            f"| {name} | {len(each)} | {failed} | {mark} {_cell(last.summary)} | {_iso(last.at)} |"
        )
    return rows


def _analysis_json(run: ProbeRun) -> dict[str, Any]:
    """A metric probe's run: its queries, condition, every measurement and the verdict."""
    analysis = analysis_of(run.detail)
    if analysis is None:
        return {}
    return {
        "analysis": {
            "queries": analysis.queries,
            "condition": analysis.condition,
            "measurements": [
                {"at": at, "phase": phase, "seen": seen}
                for at, phase, seen in analysis.measurements
            ],
            "verdict": analysis.verdict,
        }
    }


def _analyses(runs: list[dict[str, Any]]) -> list[str]:
    """Every measurement of every metric probe run, under the probe table."""
    lines: list[str] = []
    for run in runs:
        analysis = run.get("analysis")
        if analysis is None:
            continue
        lines += [
            "",
            f"#### {run['probe']} at {run['at']}: {analysis['verdict'] or 'cut short'}",
            "",
        ]
        lines += [f"- {name}: `{query}`" for name, query in analysis["queries"].items()]
        lines.append(f"- condition: `{analysis['condition']}`")
        lines += [
            f"  {n}. {m['at']} {m['phase']}: {_cell(m['seen'])}"
            for n, m in enumerate(analysis["measurements"], 1)
        ]
    return (["", "### Metric analyses"] + lines) if lines else []


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {"at": _iso(entry.at), "actor": entry.actor, "kind": entry.kind, "data": entry.data}


def _timeline_line(entry: dict[str, Any]) -> str:
    details = ", ".join(f"{k}: {v}" for k, v in entry["data"].items())
    return f"- {entry['at']} {entry['actor']} {entry['kind']}" + (
        f" ({details})" if details else ""
    )


def _iso(at: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second (``2024-05-01T14:02:09Z``): what people read in a report."""
    if at is None:
        return None
    moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _when(at: datetime | None) -> str:
    return f"{_iso(at)}" if at else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
