"""Posts a deployment report in its session's thread: the outbox's ``slack`` rows of kind
``report`` (written for a ``report_requested`` audit event, see :mod:`bot.app.effects`).

The thread gets the report's summary as Block Kit (:mod:`bot.rendering.report`), then the
full report as two files, Markdown and JSON (``files_upload_v2``: Slack's
``files.getUploadURLExternal``, the upload, ``files.completeUploadExternal``), and the person
who asked an ephemeral link to it. Each step is recorded under the outbox row's id before the
next, so a retry after a failure (Slack away mid-way) repeats none that was done.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.app.report import report_json, report_markdown
from bot.rendering.limits import validate_message
from bot.rendering.report import report_blocks, report_filenames, report_text
from bot.slack.delivery import reply
from bot.slack.links import SlackLinks
from bot.slack.publisher import REPORT_PREFIX, SUMMARY
from bot.storage.outbox import OUTBOX_ID, RetryAfter
from bot.storage.uow import UnitOfWork


class ReportPoster:
    """The handler of ``slack`` outbox rows of kind ``report``."""

    def __init__(
        self,
        *,
        client: WebClient,
        session_factory: sessionmaker[Session],
        links: SlackLinks | None = None,
    ) -> None:
        self.client = client
        self.session_factory = session_factory
        self.links = links

    def deliver(self, payload: dict[str, Any]) -> None:
        """Post the report (see the module's docstring).

        Raises:
            RetryAfter: the session's thread is not posted yet.
            SlackApiError: Slack refused or failed (the caller maps it for the outbox).
        """
        sid = int(payload["session_id"])
        purpose = f"{REPORT_PREFIX}{payload.get(OUTBOX_ID, payload.get('requested_by'))}"
        with UnitOfWork(self.session_factory) as uow:
            thread = uow.slack_messages.get(sid, SUMMARY)
            if thread is None:
                raise RetryAfter(2.0)  # the session's first message is still on its way
            posted = uow.slack_messages.get(sid, purpose)
            attached = uow.slack_messages.get(sid, f"{purpose}:files")
            session = uow.sessions.get(sid)
            history = uow.audit.for_session(sid)
            runs = uow.probe_runs.for_session(sid)
        channel, thread_ts = thread
        if posted is None:
            blocks, text = report_blocks(session, history, runs), report_text(session)
            validate_message(blocks, text=text)
            answer = self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=text, blocks=blocks
            )
            posted = (str(answer["channel"]), str(answer["ts"]))
            self._remember(sid, purpose, posted)
        if attached is None:
            markdown_name, json_name = report_filenames(session)
            data = report_json(session, history, runs)
            uploaded = self.client.files_upload_v2(
                channel=posted[0],
                thread_ts=thread_ts,
                file_uploads=[
                    {
                        "filename": markdown_name,
                        "content": report_markdown(session, history, runs),
                        "title": f"Deployment report #{sid} (Markdown)",
                        "snippet_type": "markdown",
                    },
                    {
                        "filename": json_name,
                        "content": json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                        "title": f"Deployment report #{sid} (JSON)",
                        "snippet_type": "json",
                    },
                ],
            )
            files = uploaded.get("files") or [{}]
            self._remember(sid, f"{purpose}:files", (posted[0], str(files[0].get("id", ""))))
        where = self.links.message(*posted) if self.links is not None else "in the thread"
        reply(payload.get("reply_to"), f":page_facing_up: Report posted in the thread: {where}")

    def _remember(self, session_id: int, purpose: str, message: tuple[str, str]) -> None:
        with UnitOfWork(self.session_factory) as uow:
            uow.slack_messages.put(session_id, purpose, *message)
            uow.commit()
