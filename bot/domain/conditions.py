"""Conditions on measured values: a small expression language, parsed by hand, never executed.

A condition reads like ``result < 0.01``, ``abs(result - baseline) / baseline <= 0.1``,
``result[0] in [200, 204] and not (canary > 2 * baseline)``. It has numbers, the names a
caller allows (``result``, ``baseline``, ``canary``), indexing (``result[0]``), ``abs(...)``,
``+ - * /``, comparisons (chained as in Python: ``0 < result <= 1``), ``in [...]`` and
``not in [...]``, ``and``/``or``/``not`` and parentheses; nothing else. The parser is a
recursive descent over its own tokens (no ``eval``, no Python ``ast``), so an input can only
be a condition or a ``ConditionError`` that names the column (1-based) where it went wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

NAMES = ("result", "baseline", "canary")
"""Every name the language knows; a caller may allow fewer."""

MAX_LENGTH = 1000
MAX_DEPTH = 50  # nesting; deeper input is an error, not a RecursionError

Value = float | bool | tuple[float, ...]
Values = Mapping[str, float | Sequence[float]]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|\[|\]|,))"
)
_KEYWORDS = frozenset({"and", "or", "not", "in", "abs"})
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})


class ConditionError(ValueError):
    """A condition that does not parse, or cannot be evaluated; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "op", "end"
    text: str
    column: int  # 0-based offset


@dataclass(frozen=True)
class _Node:
    op: str  # "num", "name", "index", "abs", "neg", "list", "and", "or", "not", "cmp", or + - * /
    args: tuple[_Node, ...] = ()
    value: float = 0.0
    text: str = ""  # a name; for "cmp", the operators joined by spaces
    start: int = 0
    end: int = 0

    @property
    def is_boolean(self) -> bool:
        return self.op in ("and", "or", "not", "cmp")


@dataclass(frozen=True)
class Condition:
    """A parsed condition: evaluate it against values, or show it with the values in."""

    source: str
    root: _Node

    @property
    def names(self) -> frozenset[str]:
        """The names the condition reads."""
        return frozenset(n.text for n in _walk(self.root) if n.op == "name")

    @property
    def indexes(self) -> bool:
        """Whether the condition indexes a name (``result[0]``): it reads a list of values."""
        return any(n.op == "index" for n in _walk(self.root))

    def evaluate(self, values: Values) -> bool:
        """True when the condition holds for ``values``.

        Raises:
            ConditionError: A name has no value, a value has the wrong shape (a list where a
                number is needed, an index out of range), or a division by zero.
        """
        result = _eval(self.root, values)
        if not isinstance(result, bool):  # parse() only accepts boolean roots
            raise ConditionError("the condition is not true or false", 1)
        return result

    def show(self, values: Values) -> str:
        """The source with each name (and indexed name) replaced by its value, where known."""
        spans: list[tuple[int, int, str]] = []
        for node in _walk(self.root):
            if node.op in ("name", "index") and not any(s <= node.start < e for s, e, _ in spans):
                try:
                    spans.append((node.start, node.end, format_value(_eval(node, values))))
                except ConditionError:
                    continue
        text = self.source
        for start, end, shown in sorted(spans, reverse=True):
            text = text[:start] + shown + text[end:]
        return " ".join(text.split())


def format_value(value: Value) -> str:
    """A value as a person reads it: ``0.004``, ``12``, ``[1, 2]``, ``NaN``."""
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if math.isnan(value):
        return "NaN"
    return f"{value:.6g}"


def parse(source: str, names: Sequence[str] = NAMES) -> Condition:
    """Parse a condition that may read ``names``.

    Raises:
        ConditionError: The text is not a condition: a syntax error, an unknown name, or an
            expression that is a number rather than true or false.
    """
    if len(source) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters", MAX_LENGTH + 1)
    parser = _Parser(_tokens(source), frozenset(names))
    root = parser.expression()
    parser.expect_end()
    if not root.is_boolean:
        raise ConditionError("not a condition: compare it (e.g. 'result < 0.01')", root.start + 1)
    return Condition(source, root)


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            rest = source[position:]
            if not rest.strip():
                tokens.append(_Token("end", "", len(source)))
                return tokens
            column = position + len(rest) - len(rest.lstrip())
            raise ConditionError(f"unexpected character {source[column]!r}", column + 1)
        kind = match.lastgroup or "op"
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()


class _Parser:
    def __init__(self, tokens: list[_Token], names: frozenset[str]) -> None:
        self.tokens = tokens
        self.names = names
        self.at = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def take(self, *texts: str) -> _Token | None:
        token = self.token
        if token.kind in ("op", "name") and token.text in texts:
            self.at += 1
            return token
        return None

    def expect(self, text: str) -> _Token:
        token = self.take(text)
        if token is None:
            raise self.error(f"expected '{text}'")
        return token

    def expect_end(self) -> None:
        if self.token.kind != "end":
            raise self.error("expected the end of the condition")

    def error(self, message: str) -> ConditionError:
        token = self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return ConditionError(f"{message}, found {found}", token.column + 1)

    def expression(self) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"nested more than {MAX_DEPTH} deep", self.token.column + 1)
        node = self.binary(("or",), self.conjunction)
        self.depth -= 1
        return node

    def conjunction(self) -> _Node:
        return self.binary(("and",), self.negation)

    def binary(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while (token := self.take(*ops)) is not None:
            right = operand()
            if token.text in ("and", "or"):
                for side in (node, right):
                    self._boolean(side, token.text)
            node = _Node(token.text, (node, right), start=node.start, end=right.end)
        return node

    def _boolean(self, node: _Node, op: str) -> None:
        if not node.is_boolean:
            raise ConditionError(f"'{op}' needs conditions on both sides", node.start + 1)

    def negation(self) -> _Node:
        token = self.take("not")
        if token is None:
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"nested more than {MAX_DEPTH} deep", token.column + 1)
        operand = self.negation()
        self.depth -= 1
        self._boolean(operand, "not")
        return _Node("not", (operand,), start=token.column, end=operand.end)

    def comparison(self) -> _Node:
        first = self.sum()
        operands, ops = [first], []
        while True:
            token = self.token
            if token.kind == "op" and token.text in _COMPARISONS:
                self.at += 1
                ops.append(token.text)
                operands.append(self.sum())
            elif self.take("in"):
                ops.append("in")
                operands.append(self.list_literal())
            elif token.text == "not" and self.tokens[self.at + 1].text == "in":
                self.at += 2
                ops.append("not in")
                operands.append(self.list_literal())
            else:
                break
        if not ops:
            return first
        for operand in operands:
            if operand.is_boolean:
                raise ConditionError("compare numbers, not conditions", operand.start + 1)
        return _Node(
            "cmp", tuple(operands), text=",".join(ops), start=first.start, end=operands[-1].end
        )

    def list_literal(self) -> _Node:
        start = self.expect("[")
        items = [self.sum()]
        while self.take(","):
            items.append(self.sum())
        end = self.expect("]")
        return _Node("list", tuple(items), start=start.column, end=end.column + 1)

    def sum(self) -> _Node:
        return self.binary(("+", "-"), self.product)

    def product(self) -> _Node:
        return self.binary(("*", "/"), self.unary)

    def unary(self) -> _Node:
        token = self.take("-", "+")
        if token is None:
            return self.postfix()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"nested more than {MAX_DEPTH} deep", token.column + 1)
        operand = self.unary()
        self.depth -= 1
        if token.text == "+":
            return operand
        return _Node("neg", (operand,), start=token.column, end=operand.end)

    def postfix(self) -> _Node:
        node = self.primary()
        while self.take("["):
            index = self.expression()
            if index.is_boolean:
                raise ConditionError("an index is a number", index.start + 1)
            end = self.expect("]")
            node = _Node("index", (node, index), start=node.start, end=end.column + 1)
        return node

    def primary(self) -> _Node:
        token = self.token
        if token.kind == "number":
            self.at += 1
            value = float(token.text)
            if math.isinf(value):
                raise ConditionError("number too large", token.column + 1)
            return _Node("num", value=value, start=token.column, end=_after(token))
        if self.take("("):
            inner = self.expression()
            close = self.expect(")")
            return _Node(inner.op, inner.args, inner.value, inner.text, token.column, _after(close))
        if self.take("abs"):
            self.expect("(")
            inner = self.expression()
            if inner.is_boolean:
                raise ConditionError("abs() takes a number", inner.start + 1)
            close = self.expect(")")
            return _Node("abs", (inner,), start=token.column, end=_after(close))
        if token.kind == "name" and token.text not in _KEYWORDS:
            self.at += 1
            if token.text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise ConditionError(
                    f"unknown name '{token.text}' (known: {known})", token.column + 1
                )
            return _Node("name", text=token.text, start=token.column, end=_after(token))
        raise self.error("expected a number, a name, 'abs(' or '('")


def _after(token: _Token) -> int:
    return token.column + len(token.text)


def _walk(node: _Node) -> list[_Node]:
    nodes = [node]
    for arg in node.args:
        nodes += _walk(arg)
    return nodes


def _eval(node: _Node, values: Values) -> Value:
    column = node.start + 1
    if node.op == "num":
        return node.value
    if node.op == "name":
        if node.text not in values:
            raise ConditionError(f"'{node.text}' has no value", column)
        value = values[node.text]
        if isinstance(value, int | float):
            return float(value)
        return tuple(float(v) for v in value)
    if node.op == "list":
        return tuple(_number(_eval(arg, values), arg) for arg in node.args)
    if node.op == "index":
        items, index = _eval(node.args[0], values), _number(_eval(node.args[1], values), node)
        if not isinstance(items, tuple):
            raise ConditionError("only a list can be indexed", column)
        if index != int(index) or not -len(items) <= index < len(items):
            raise ConditionError(f"no item {format_value(index)} in {len(items)}", column)
        return items[int(index)]
    if node.op == "and":
        return bool(_eval(node.args[0], values)) and bool(_eval(node.args[1], values))
    if node.op == "or":
        return bool(_eval(node.args[0], values)) or bool(_eval(node.args[1], values))
    if node.op == "not":
        return not _eval(node.args[0], values)
    if node.op == "cmp":
        return _compare(node, values)
    if node.op in ("abs", "neg"):
        number = _number(_eval(node.args[0], values), node.args[0])
        return abs(number) if node.op == "abs" else -number
    left = _number(_eval(node.args[0], values), node.args[0])
    right = _number(_eval(node.args[1], values), node.args[1])
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        raise ConditionError("division by zero", node.args[1].start + 1)
    return left / right


def _compare(node: _Node, values: Values) -> bool:
    ops = node.text.split(",")
    left = _number(_eval(node.args[0], values), node.args[0])
    for op, operand in zip(ops, node.args[1:], strict=True):
        right = _eval(operand, values)
        if op in ("in", "not in"):
            assert isinstance(right, tuple)
            if (left in right) != (op == "in"):
                return False
            continue
        number = _number(right, operand)
        holds = {
            "<": left < number,
            "<=": left <= number,
            ">": left > number,
            ">=": left >= number,
            "==": left == number,
            "!=": left != number,
        }[op]
        if not holds:
            return False
        left = number
    return True


def _number(value: Value, node: _Node) -> float:
    if isinstance(value, bool) or not isinstance(value, float):
        raise ConditionError(
            "expected a number, found a list (index it: result[0])", node.start + 1
        )
    return value
