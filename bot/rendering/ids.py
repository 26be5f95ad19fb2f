"""The one registry of Slack action, view and input ids, shared by rendering and listeners.

Values that travel in a button ``value``, a ``block_id`` or a view's ``private_metadata``
are ``|``-joined parts: :func:`pack` builds them and :func:`unpack` splits them again.
"""

from __future__ import annotations

from enum import StrEnum

SEPARATOR = "|"


class ActionId(StrEnum):
    """``action_id`` of the interactive elements in deploy messages."""

    # checkboxes; block_id "tick|<session_id>|<item ids joined by ','>"; option value = item id
    TICK = "deploy.tick"
    # button in each checklist message; value "<session_id>|<section_id>"; opens the skip modal
    SKIP = "deploy.skip"
    # value "<session_id>|<sign-off key>"
    SIGN_OFF = "deploy.sign_off"
    START_DEPLOYMENT = "deploy.start_deployment"  # value "<session_id>"
    FINISH_DEPLOYMENT = "deploy.finish_deployment"  # value "<session_id>"
    RUN_PROBES = "deploy.run_probes"  # value "<session_id>"
    COMPLETE = "deploy.complete"  # value "<session_id>", with a confirm dialog
    # value "<session_id>", with a confirm dialog; the listener then asks for a reason
    ABORT = "deploy.abort"
    # Incident thread buttons, value "<session_id>"; roll back has a confirm dialog.
    ACKNOWLEDGE = "deploy.incident_acknowledge"
    ROLL_BACK = "deploy.roll_back"
    RESOLVE = "deploy.incident_resolve"
    # Deploy steps, value "<session_id>|<step>": end a pause; run a failed step again.
    CONTINUE_STEP = "deploy.continue_step"
    RETRY_STEP = "deploy.retry_step"
    # in the answer to a start refused because the slot is taken; value "<env>|<service>"
    QUEUE_JOIN = "deploy.queue_join"


class ViewId(StrEnum):
    """``callback_id`` of the modals."""

    SKIP = "deploy.skip_modal"  # private_metadata "<session_id>|<section_id>"
    ABORT = "deploy.abort_modal"  # private_metadata "<session_id>"


class InputId(StrEnum):
    """``block_id`` and ``action_id`` (the same string) of modal inputs."""

    # static_select of the section's open items (option value: the item id) and, in a group
    # of their own, its skipped items (option value: pack(UNSKIP, item id))
    SKIP_ITEM = "skip_item"
    SKIP_REASON = "skip_reason"  # plain_text_input, required
    ABORT_REASON = "abort_reason"  # plain_text_input, required


UNSKIP = "unskip"
"""First part of a skip modal option that takes a skip back: ``pack(UNSKIP, "1.3")``."""

TICK_BLOCK = "tick"
"""First part of a checkboxes block's id: ``pack(TICK_BLOCK, session_id, "1.1,1.2")``."""


def pack(*parts: object) -> str:
    """Join parts into one ``|``-separated value.

    Raises:
        ValueError: a part contains the separator, so :func:`unpack` could not restore it.
    """
    texts = [str(part) for part in parts]
    for text in texts:
        if SEPARATOR in text:
            raise ValueError(f"{text!r} contains {SEPARATOR!r} and cannot be packed")
    return SEPARATOR.join(texts)


def unpack(value: str) -> list[str]:
    """Split a value made by :func:`pack` into its parts (as strings)."""
    return value.split(SEPARATOR)
