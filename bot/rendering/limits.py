"""Slack's Block Kit limits: check what we send, and fit user text into them.

Every block is parsed with slack_sdk's models, which check their own length limits; on top of
that we check what slack_sdk does not (block counts, options per checkboxes element, unique
block ids, the size of the whole message). Sizes of JSON are measured as ``json.dumps``
writes them (non-ASCII escaped), which is what slack_sdk sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_CHECKBOX_OPTIONS = 10
MAX_SELECT_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_BUTTON_TEXT = 75
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_TEXT = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BLOCK_ID = 255
MAX_MESSAGE_JSON = 12_000
MAX_FALLBACK_TEXT = 40_000
ELLIPSIS = "…"

JsonBlock = dict[str, Any]


class BlockKitError(ValueError):
    """A message or view that Slack would refuse; the message names the block and the limit."""


# Validation


def validate_message(blocks: list[JsonBlock], *, text: str | None = None) -> None:
    """Check a message's blocks (and fallback text) against Slack's limits.

    Raises:
        BlockKitError: a block is malformed or a limit is exceeded.
    """
    if text is not None and width(text) > MAX_FALLBACK_TEXT:
        raise BlockKitError(f"text is {width(text)} characters; at most {MAX_FALLBACK_TEXT}")
    if not blocks and not text:
        raise BlockKitError("a message needs blocks or text")
    _validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS, surface="message")
    size = len(json.dumps(blocks))
    if size > MAX_MESSAGE_JSON:
        raise BlockKitError(
            f"blocks are {size} characters of JSON; a message holds at most {MAX_MESSAGE_JSON}"
        )


def validate_view(view: dict[str, Any]) -> None:
    """Check a modal view and its blocks against Slack's limits.

    Raises:
        BlockKitError: the view or a block is malformed or a limit is exceeded.
    """
    try:
        parsed = View(**view)
        parsed.validate_json()
        parsed.to_dict()
    except (SlackObjectFormationError, TypeError, AttributeError, KeyError, ValueError) as error:
        raise BlockKitError(f"view: {error}") from error
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise BlockKitError("view: a view needs at least one block")
    _validate_blocks(blocks, max_blocks=MAX_VIEW_BLOCKS, surface="modal")
    if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
        raise BlockKitError("view: a modal with input blocks needs a submit button")


def fits(blocks: list[JsonBlock]) -> bool:
    """Whether ``blocks`` make a valid message (see :func:`validate_message`)."""
    try:
        validate_message(blocks)
    except BlockKitError:
        return False
    return True


def _validate_blocks(blocks: list[JsonBlock], *, max_blocks: int, surface: str) -> None:
    if not isinstance(blocks, list):
        raise BlockKitError(f"blocks must be a list, not {type(blocks).__name__}")
    if len(blocks) > max_blocks:
        raise BlockKitError(f"{len(blocks)} blocks; a {surface} holds at most {max_blocks}")
    seen: dict[str, int] = {}
    for index, block in enumerate(blocks):
        _validate_block(index, block)
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in seen:
                first = seen[block_id]
                raise BlockKitError(f"block {index}: block_id {block_id!r} repeats block {first}'s")
            seen[block_id] = index


def _validate_block(index: int, block: JsonBlock) -> None:
    where = f"block {index}"
    if not isinstance(block, dict):
        raise BlockKitError(f"{where}: not an object")
    where = f"block {index} ({block.get('type')})"
    try:
        parsed = Block.parse(block)
        if parsed is None:
            raise BlockKitError(f"{where}: unknown block type")
        parsed.validate_json()
        roundtrip = parsed.to_dict()  # validates nested elements and objects too
    except (SlackObjectFormationError, TypeError, AttributeError, KeyError, ValueError) as error:
        if isinstance(error, BlockKitError):
            raise
        raise BlockKitError(f"{where}: {error}") from error
    dropped = _dropped_keys(block, roundtrip, "")
    if dropped:
        raise BlockKitError(f"{where}: slack_sdk does not know {dropped!r}")
    problem = _own_checks(block)
    if problem:
        raise BlockKitError(f"{where}: {problem}")


def _dropped_keys(original: Any, parsed: Any, path: str) -> str | None:
    """The first field of ``original`` that slack_sdk's model dropped: unknown or misspelt."""
    if isinstance(original, dict) and isinstance(parsed, dict):
        for key, value in original.items():
            if key not in parsed:
                return f"{path}.{key}" if path else key
            found = _dropped_keys(value, parsed[key], f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(original, list) and isinstance(parsed, list):
        for i, (a, b) in enumerate(zip(original, parsed, strict=False)):
            found = _dropped_keys(a, b, f"{path}[{i}]")
            if found:
                return found
    return None


def _own_checks(block: JsonBlock) -> str | None:
    """Limits that slack_sdk does not check (or checks only in some element types)."""
    kind = block.get("type")
    text = block.get("text")
    if kind == "section" and isinstance(text, dict) and width(text["text"]) > MAX_SECTION_TEXT:
        return f"section text is {width(text['text'])} characters; at most {MAX_SECTION_TEXT}"
    for field in block.get("fields") or []:
        if width(field["text"]) > MAX_FIELD_TEXT:
            return f"a field is {width(field['text'])} characters; at most {MAX_FIELD_TEXT}"
    if kind == "context":
        for element in block.get("elements") or []:
            if "text" in element and width(element["text"]) > MAX_CONTEXT_TEXT:
                return (
                    f"context text is {width(element['text'])} characters; "
                    f"at most {MAX_CONTEXT_TEXT}"
                )
    for element in _elements(block):
        problem = _element_problem(element)
        if problem:
            return problem
    return None


def _elements(block: JsonBlock) -> Iterator[dict[str, Any]]:
    if block.get("type") == "actions":
        yield from block.get("elements") or []
    for key in ("accessory", "element"):
        if isinstance(block.get(key), dict):
            yield block[key]


def _element_problem(element: dict[str, Any]) -> str | None:
    kind = element.get("type")
    options = element.get("options") or []
    if kind in ("checkboxes", "radio_buttons") and len(options) > MAX_CHECKBOX_OPTIONS:
        return f"{kind} has {len(options)} options; at most {MAX_CHECKBOX_OPTIONS}"
    for option in options + (element.get("initial_options") or []):
        label = option["text"]["text"]
        if width(label) > MAX_OPTION_TEXT:
            return f"option text is {width(label)} characters; at most {MAX_OPTION_TEXT}: {label!r}"
    if kind == "button" and width(element["text"]["text"]) > MAX_BUTTON_TEXT:
        label = element["text"]["text"]
        return f"button text is {width(label)} characters; at most {MAX_BUTTON_TEXT}: {label!r}"
    return None


# Fitting text


def width(text: str) -> int:
    """Length as Slack may count it: UTF-16 code units (never less than ``len(text)``)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def json_len(text: str) -> int:
    """Characters ``text`` takes inside a JSON string written by ``json.dumps``."""
    return len(json.dumps(text)) - 2


def json_size(value: Any) -> int:
    """Characters ``json.dumps(value)`` takes."""
    return len(json.dumps(value))


def escape(text: str) -> str:
    """Escape user text for mrkdwn so it cannot open mentions, links or entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, *, json_limit: int | None = None, mrkdwn: bool = False) -> str:
    """``text`` cut with "…" to at most ``limit`` characters and ``json_limit`` JSON characters.

    With ``mrkdwn`` the text is escaped first, and an escape (``&amp;``) is never cut in two.
    """
    full = escape(text) if mrkdwn else text
    if width(full) <= limit and (json_limit is None or json_len(full) <= json_limit):
        return full
    room_width = limit - width(ELLIPSIS)
    room_json = None if json_limit is None else json_limit - json_len(ELLIPSIS)
    kept: list[str] = []
    used_width = used_json = 0
    for char in text:
        piece = escape(char) if mrkdwn else char
        used_width += width(piece)
        used_json += json_len(piece)
        if used_width > room_width or (room_json is not None and used_json > room_json):
            break
        kept.append(piece)
    return "".join(kept).rstrip() + ELLIPSIS


def bounded_lines(
    lines: list[str], *, limit: int, json_limit: int, more: Callable[[int], str]
) -> list[str]:
    """As many of ``lines`` as fit ``limit`` characters and ``json_limit`` JSON characters
    joined by newlines, then ``more(n)`` saying how many were left out.
    """
    kept: list[str] = []
    used_width = used_json = 0
    for i, line in enumerate(lines):
        left = len(lines) - i - 1
        tail = more(left) if left else ""
        used_width += width(line) + 1
        used_json += json_len(line) + 2
        if used_width + width(tail) > limit or used_json + json_len(tail) > json_limit:
            return [*kept, more(left + 1)]
        kept.append(line)
    return kept
