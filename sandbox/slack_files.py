"""Slack's file uploads for the stand-in: what ``WebClient.files_upload_v2`` calls.

Slack's flow (docs.slack.dev, "files.getUploadURLExternal"): the client asks
``files.getUploadURLExternal`` for an upload URL and a file ID, giving the file's
``filename`` and its ``length`` in bytes; POSTs the file's bytes to that URL (Slack's upload
service answers HTTP 200); then calls ``files.completeUploadExternal`` with
``files=[{"id", "title"}]`` (a JSON array) and, to share the files, ``channel_id`` (and
``thread_ts`` for a thread). Until completed, a file is shared nowhere.

:class:`FileStore` keeps the uploads; :class:`~sandbox.slack_api.FakeSlack` routes the two
Web API methods and the upload URLs (``/upload/v1/<key>``) to it, under its lock.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

UPLOAD_PREFIX = "/upload/v1/"


@dataclass
class File:
    """An uploaded file, as a test sees it.

    Attributes:
        id: Slack's file ID (``F…``).
        name: the ``filename`` given to ``files.getUploadURLExternal``.
        length: the length in bytes announced there.
        content: the bytes POSTed to the upload URL (None until then).
        title: the title given at completion.
        channel: where the file was shared (None: private, or not completed).
        thread_ts: the thread it was shared in.
        completed: whether ``files.completeUploadExternal`` finished it.
    """

    id: str
    name: str
    length: int
    content: bytes | None = None
    title: str = ""
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False
    upload_key: str = field(default="", repr=False)

    @property
    def text(self) -> str:
        return (self.content or b"").decode("utf-8")

    def as_payload(self) -> dict[str, Any]:
        """The file object Slack returns (the fields a client reads)."""
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title or self.name,
            "size": len(self.content or b""),
            "channels": [self.channel] if self.channel else [],
        }


class FileStore:
    """Uploads by file ID. Not thread-safe on its own: FakeSlack calls it under its lock."""

    def __init__(self) -> None:
        self.files: dict[str, File] = {}
        self._ids = itertools.count(1)

    def get_upload_url(self, params: dict[str, Any], base_url: str) -> dict[str, Any]:
        """``files.getUploadURLExternal``: ``filename`` and ``length`` (bytes) required."""
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length") or 0)
        except (TypeError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        if not filename:
            return {"ok": False, "error": "invalid_arguments"}
        if length <= 0:
            return {"ok": False, "error": "missing_argument"}  # Slack's answer to length 0
        file = File(f"F{next(self._ids):010d}", filename, length)
        file.upload_key = secrets.token_urlsafe(12)
        self.files[file.id] = file
        return {
            "ok": True,
            "upload_url": f"{base_url}{UPLOAD_PREFIX}{file.upload_key}",
            "file_id": file.id,
        }

    def upload(self, path: str, body: bytes) -> tuple[int, bytes]:
        """A POST of the file's bytes to its upload URL: HTTP status and body."""
        key = path.removeprefix(UPLOAD_PREFIX)
        file = next((f for f in self.files.values() if f.upload_key == key), None)
        if file is None or file.completed:
            return 404, b"not found"
        file.content = body
        return 200, f"OK - {len(body)}".encode()

    def complete(self, params: dict[str, Any], channel: str | None) -> dict[str, Any]:
        """``files.completeUploadExternal``: ``files`` (JSON array of ``{id, title}``), and
        ``channel`` (already resolved to an ID) with ``thread_ts`` to share them."""
        wanted = params.get("files")
        if not isinstance(wanted, list) or not wanted:
            return {"ok": False, "error": "invalid_arguments"}
        found: list[File] = []
        for entry in wanted:
            file = self.files.get(str(entry.get("id") if isinstance(entry, dict) else ""))
            if file is None or file.content is None or file.completed:
                return {"ok": False, "error": "file_not_found"}
            found.append(file)
        thread = str(params["thread_ts"]) if params.get("thread_ts") else None
        for file, entry in zip(found, wanted, strict=True):
            file.title = str(entry.get("title") or file.name)
            file.channel, file.thread_ts, file.completed = channel, thread, True
        return {"ok": True, "files": [f.as_payload() for f in found]}
