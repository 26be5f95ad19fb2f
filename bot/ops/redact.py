"""Removes secrets from text before it is stored, posted to Slack, sent to PagerDuty or logged.

Three layers, applied in this order:

1. the exact values the caller knows are secret (what it read from the environment for a
   probe or a step): masked wherever they appear, whatever their shape;
2. known shapes (:mod:`bot.ops.secret_shapes`): detect-secrets' plugin patterns and our own
   for headers, ``key=value`` pairs, URL passwords, PEM blocks, JWTs, signed URLs;
3. bare high-entropy tokens (a 40-character AWS secret key with nothing around it).

Each layer takes time linear in the length of the text (``benchmarks/redact.py``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from bot.ops.secret_shapes import ENTROPY_SHAPE, MASK, OWN_SHAPES, Replacement, adopted_shapes

__all__ = ["MASK", "StepEnvironment", "redact", "step_environment"]

MIN_SECRET_LENGTH = 4  # a shorter "secret" would mask every occurrence of common text


@functools.cache
def _shapes() -> tuple[tuple[str, re.Pattern[str], Replacement], ...]:
    return (*OWN_SHAPES, *adopted_shapes(), ENTROPY_SHAPE)


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets masked: the exact ``secrets`` given, known shapes, random keys.

    Pass the values the caller itself used (header values read from the environment, a
    database URL, a step's environment) in ``secrets``: those are masked wherever they
    appear, whatever their shape. What names a secret (a header, a key) is kept, so the
    reader knows what was there.
    """
    values = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    for _, pattern, replacement in _shapes():
        text = pattern.sub(replacement, text)
    return text


class StepEnvironment(dict[str, str]):
    """The variables one step (a probe, a rollback or deploy step) runs with.

    Its values are the step's secrets: :meth:`redact` masks them by value, as well as every
    known shape, in whatever the step printed or raised.
    """

    def redact(self, text: str) -> str:
        """``text`` fit to leave the process: this environment's values and known shapes masked."""
        return redact(text, secrets=self.values())


def step_environment(names: Iterable[str], environ: Mapping[str, str]) -> StepEnvironment:
    """Only the variables ``names`` lists, taken from ``environ`` (unset ones are left out)."""
    return StepEnvironment({name: environ[name] for name in names if name in environ})
