"""Pure rendering of deploy sessions to Slack Block Kit: session state in, JSON out.

No I/O and no clock here (callers pass ``now``). Every message passes
:func:`bot.rendering.limits.validate_message` and every view :func:`validate_view`.
"""

from bot.rendering.checklist import ChecklistMessage, checklist_messages
from bot.rendering.limits import BlockKitError, fits, validate_message, validate_view
from bot.rendering.listing import help_blocks, list_blocks
from bot.rendering.modals import abort_modal, skip_modal
from bot.rendering.session import status_blocks, summary_blocks, summary_text

__all__ = [
    "BlockKitError",
    "ChecklistMessage",
    "abort_modal",
    "checklist_messages",
    "fits",
    "help_blocks",
    "list_blocks",
    "skip_modal",
    "status_blocks",
    "summary_blocks",
    "summary_text",
    "validate_message",
    "validate_view",
]
