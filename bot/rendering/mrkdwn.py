"""Runbook text (CommonMark inline syntax) as Slack shows it: mrkdwn, or plain text.

Checklists keep their items' text as the runbook wrote it (``**bold**``, ``[text](url)``,
inline code...), so the report can quote it as Markdown; rendering converts it here, through
markdown-it's inline tokens. Slack's mrkdwn bolds with one ``*``, italicises with ``_``,
strikes with ``~``, links as ``<url|text>`` and needs only ``&``, ``<`` and ``>`` escaped.
It has no escape for its own markers: a backslash-escaped ``\\*`` becomes a literal ``*``,
which Slack pairs only when another marker closes it at a word boundary.

Text that is too long is cut between tokens (or between the characters of a text or code
token), never inside an escape or a link; what was open is closed, and the rest reopens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.rendering.limits import ELLIPSIS, escape, json_len, width

# Slack's marker for each CommonMark emphasis token.
_MARKERS = {"strong": "*", "em": "_", "s": "~"}
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")


@dataclass(frozen=True)
class _Piece:
    """One unit of converted text.

    ``kind`` is ``text`` (may be cut between characters), ``open`` / ``close`` (a marker),
    or ``atom`` (a link: whole or not at all; ``plain`` is its label, shown when it does not
    fit).
    """

    kind: str
    text: str
    plain: str = ""


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("strikethrough")


def to_mrkdwn(markdown: str) -> str:
    """CommonMark inline text as Slack mrkdwn (user text is escaped; nothing else is)."""
    return "".join(p.text for p in _pieces(markdown))


def to_plain(markdown: str) -> str:
    """CommonMark inline text without its markup, for Slack's ``plain_text`` objects.

    Inline code keeps its backquotes (they say "this is a command"); links keep their text.
    """
    return "".join(_plain_text(t) for t in _tokens(markdown))


def clip_mrkdwn(markdown: str, limit: int, *, json_limit: int | None = None) -> str:
    """:func:`to_mrkdwn`, cut with "…" to ``limit`` characters and ``json_limit`` JSON ones."""
    return _split(_pieces(markdown), limit, json_limit)[0]


def split_mrkdwn(
    markdown: str,
    limit: int,
    *,
    json_limit: int | None = None,
    rest_limit: int,
    rest_json_limit: int | None = None,
) -> tuple[str, str | None]:
    """:func:`to_mrkdwn` in two: a head that fits, and the rest (``None`` if nothing is left).

    The head ends with what it opened closed again and "…"; the rest starts with "…" and
    reopens those markers (itself cut to ``rest_limit`` and ``rest_json_limit``), so that
    head and rest together show the text once.
    """
    head, rest = _split(_pieces(markdown), limit, json_limit)
    if not rest:
        return head, None
    return head, _split([_Piece("text", ELLIPSIS), *rest], rest_limit, rest_json_limit)[0]


def _split(pieces: list[_Piece], limit: int, json_limit: int | None) -> tuple[str, list[_Piece]]:
    full = "".join(p.text for p in pieces)
    if width(full) <= limit and (json_limit is None or json_len(full) <= json_limit):
        return full, []
    cut = _Cutter(limit, json_limit)
    rest: list[_Piece] = []
    for index, piece in enumerate(pieces):
        left = cut.take(piece)
        if left is not None:
            rest = [left, *pieces[index + 1 :]] if left.text.strip() else pieces[index + 1 :]
            break
    head = cut.head()
    reopen = [_Piece("open", marker) for marker in cut.reopen]
    return head, [*reopen, *rest] if rest else []


class _Cutter:
    """Keeps pieces while they, the markers still open and "…" fit the limits."""

    def __init__(self, limit: int, json_limit: int | None) -> None:
        self.limit, self.json_limit = limit, json_limit
        self.kept: list[str] = []
        self.open: list[str] = []  # markers opened and not closed yet, innermost last
        self.reopen: list[str] = []  # the markers the rest must open again
        self.used_width = self.used_json = 0
        self.shown = False  # whether any text is kept yet (not only markers)

    def fits(self, text: str, open_after: list[str]) -> bool:
        closers = "".join(reversed(open_after)) + ELLIPSIS
        if self.used_width + width(text) + width(closers) > self.limit:
            return False
        return self.json_limit is None or (
            self.used_json + json_len(text) + json_len(closers) <= self.json_limit
        )

    def keep(self, text: str) -> None:
        self.kept.append(text)
        self.used_width += width(text)
        self.used_json += json_len(text)

    def take(self, piece: _Piece) -> _Piece | None:
        """Keep ``piece`` or as much of it as fits; return what is left of it, if anything.

        A link is kept whole or left for the rest, unless nothing is kept before it: then
        its text is cut like any other.
        """
        if piece.kind == "open":
            if not self.fits(piece.text, [*self.open, piece.text]):
                return piece
            self.keep(piece.text)
            self.open.append(piece.text)
            return None
        if piece.kind == "close":
            self.keep(piece.text)  # always fits: its room was kept since it opened
            self.open.pop()
            return None
        if self.fits(piece.text, self.open):
            self.keep(piece.text)
            self.shown = True
            return None
        if piece.kind == "atom" and self.shown:
            return piece
        text = piece.plain if piece.kind == "atom" else piece.text
        kept = self._chars(text)
        return _Piece("text", text[kept:].lstrip())

    def _chars(self, text: str) -> int:
        """Keep as many characters of text (escaped as a unit, so ``&amp;`` is never cut) as
        fit; back off to a space when one is near. Returns how many source characters."""
        count, pieces = 0, list[str]()
        for char in _units(text):
            if not self.fits("".join(pieces) + char, self.open):
                break
            pieces.append(char)
            count += len(char)
        joined = "".join(pieces)
        space = joined.rfind(" ")
        near = space > 0 or (space == 0 and self.shown)
        if near and len(joined) - space <= 15 and count < len(text) and text[count] != " ":
            joined = joined[:space]
            count = space
        if joined:
            self.keep(joined)
            self.shown = True
        return count

    def head(self) -> str:
        # A marker opened with nothing after it is dropped, not shown as "*…".
        while self.open and self.kept and self.kept[-1] == self.open[-1]:
            self.kept.pop()
            self.reopen.insert(0, self.open.pop())
        self.reopen = [*self.open, *self.reopen]
        # Slack closes a marker only after a non-space.
        text = "".join(self.kept).rstrip()
        return text + "".join(reversed(self.open)) + ELLIPSIS


def _units(text: str) -> list[str]:
    """Characters, with an escape (``&amp;``) kept whole."""
    return re.findall(r"&(?:amp|lt|gt);|.", text, flags=re.DOTALL)


def _tokens(markdown: str) -> list[Token]:
    heading = _HEADING.match(markdown)
    source = heading.group(1) if heading else markdown
    parsed = _parser().parseInline(source)
    children = list(parsed[0].children or []) if parsed else []
    if heading:  # an ATX heading in an item's text reads as bold
        children = [Token("strong_open", "strong", 1), *children]
        children.append(Token("strong_close", "strong", -1))
    return children


def _pieces(markdown: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    tokens = _tokens(markdown)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        kind, _, edge = token.type.rpartition("_")
        if token.type == "link_open":
            end = _closing(tokens, i)
            label = "".join(_plain_text(t) for t in tokens[i + 1 : end])
            href = str(token.attrs.get("href", ""))
            pieces.append(_link(href, "" if token.markup == "autolink" else label))
            i = end + 1
            continue
        if kind in _MARKERS and edge in ("open", "close"):
            pieces.append(_Piece(edge, _MARKERS[kind]))
        elif token.type == "code_inline":
            code = escape(token.content.replace("`", "'"))
            pieces += [_Piece("open", "`"), _Piece("text", code), _Piece("close", "`")]
        elif token.type == "image":
            pieces.append(_link(str(token.attrs.get("src", "")), token.content))
        elif token.type in ("softbreak", "hardbreak"):
            pieces.append(_Piece("text", " "))
        else:  # text, html_inline
            pieces.append(_Piece("text", escape(token.content)))
        i += 1
    return _balanced(pieces)


def _balanced(pieces: list[_Piece]) -> list[_Piece]:
    """Drop empty emphasis (``****``): Slack would show the markers."""
    out: list[_Piece] = []
    for piece in pieces:
        if piece.kind == "close" and out and out[-1].kind == "open":
            out.pop()
            continue
        out.append(piece)
    return out


def _closing(tokens: list[Token], start: int) -> int:
    depth = 0
    for index in range(start, len(tokens)):
        depth += tokens[index].nesting if tokens[index].type.startswith("link_") else 0
        if depth == 0:
            return index
    return len(tokens) - 1


def _link(url: str, label: str) -> _Piece:
    plain = escape(label or url)
    # markdown-it has percent-encoded spaces and angle brackets; "|" would end the URL.
    target = escape(url.replace("|", "%7C"))
    if not target:
        return _Piece("text", plain)
    if not label or label == url:
        return _Piece("atom", f"<{target}>", plain)
    return _Piece("atom", f"<{target}|{plain}>", plain)


def _plain_text(token: Token) -> str:
    if token.type in ("text", "html_inline"):
        return token.content
    if token.type == "code_inline":
        return f"`{token.content}`"
    if token.type == "image":
        return token.content
    if token.type in ("softbreak", "hardbreak"):
        return " "
    return ""
