"""The shapes of secrets the redactor knows, each matched in time linear in the text.

Two sources: Yelp's ``detect-secrets`` (the denylist regexes of its plugins: GitHub, GitLab,
Stripe, AWS key IDs, Azure storage keys, SendGrid, Twilio...), and our own patterns for what
its plugins only flag by their first line or match with unbounded backtracking (PEM blocks,
JWTs, URL passwords, ``key=value`` pairs, headers, signed-URL parameters), plus a
high-entropy test for bare keys that have no recognisable prefix.

Linear time is a property of each pattern, not of the input:

* our own patterns start at a boundary (a negative lookbehind of the class they go on to
  scan), so a run of characters is scanned from its start only, and their unbounded
  repeats are possessive, so nothing is given back and scanned again;
* a ``detect-secrets`` pattern is adopted only if it has no unbounded repeat and the
  backtracking it could do from one position is small (:func:`backtracking_budget`); the
  others are covered by our own patterns.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

MASK = "[REDACTED]"
BUDGET = 5000  # the most backtracking steps an adopted pattern may take from one position

Replacement = str | Callable[[re.Match[str]], str]

# Detectors not adopted: IP addresses are not secrets (on-call need them), the keyword and
# entropy plugins are replaced by our own rules below, and a private key's header alone is
# not enough (the block is masked whole below).
_NOT_ADOPTED = {
    "IPPublicDetector",
    "KeywordDetector",
    "PrivateKeyDetector",
    "Base64HighEntropyString",
    "HexHighEntropyString",
}

# Names whose value is secret wherever they appear as ``name=value`` / ``"name": value``.
_SECRET_KEY_WORDS = (
    "password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
    "private[_-]?key|credential|session[_-]?key|auth[_-]?key|client[_-]?key|"
    "authorization|cookie|signing[_-]?key|encryption[_-]?key|dsn"
)
# Query parameters that sign a URL (S3 and GCS presigned URLs, Azure SAS): exact names only,
# since ``sig`` as part of a name (``signal``, ``design``) is harmless.
_SIGNATURE_PARAMS = (
    "sig|signature|x-amz-signature|x-amz-security-token|x-goog-signature|x-goog-credential|"
    "x-amz-credential"
)
# Headers whose whole value is secret, written ``Name: value`` (curl -v, HTTP dumps).
_SECRET_HEADERS = (
    "(?:proxy-)?authorization|(?:set-)?cookie|x-api-key|api-key|x-auth-token|"
    "private-token|x-vault-token|x-amz-security-token"
)
_KEY_CHARS = r"[\w.-]"
_QUOTED = r"""\\?["']"""


def _keyed_value(match: re.Match[str]) -> str:
    """``key<sep>value`` with the value masked, its quotes kept."""
    value = match["value"]
    if value.startswith('\\"'):
        masked = f'\\"{MASK}\\"'
    elif value[:1] in "\"'":
        masked = f"{value[0]}{MASK}{value[0]}"
    else:
        masked = MASK
    return f"{match['key']}{masked}"


def _url_passwords(match: re.Match[str]) -> str:
    """Every ``scheme://user:password@host`` in one URL-ish run, password masked.

    The password may hold ``/`` and ``@`` (unencoded, as people write them): it runs from the
    first ``:`` to the last ``@`` before the query. ``host:8080/path`` is a port, not a password.
    """
    head, *rest = match[0].split("://")
    pieces = [head]
    for piece in rest:
        # A password starting with "//" splits as a scheme would ("user", "/pw@host"): a
        # bare user name before such a split is the start of the next piece, not a URL.
        if len(pieces) > 1 and _USER.fullmatch(pieces[-1]):
            pieces[-1] += "://" + piece
        else:
            pieces.append(piece)
    for n, piece in enumerate(pieces[1:], start=1):
        colon = piece.find(":")
        if colon < 0 or any(c in piece[:colon] for c in "/?#@"):
            continue
        region = re.split(r"[?#]", piece, maxsplit=1)[0]
        at = region.rfind("@")
        password = piece[colon + 1 : at]
        if at <= colon or not password or _PORT.match(password):
            continue
        pieces[n] = f"{piece[: colon + 1]}{MASK}{piece[at:]}"
    return "://".join(pieces)


_PORT = re.compile(r"\d{1,5}(?:[/?#]|$)")
_USER = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]++")


def _pem_block(match: re.Match[str]) -> str:
    return f"{match['head']}{MASK}{match['tail'] or ''}"


# Our own shapes, in the order they are applied. Every unbounded repeat is possessive and
# every pattern starts at a literal or at the start of a run of what it scans.
OWN_SHAPES: list[tuple[str, re.Pattern[str], Replacement]] = [
    (
        "private key block",
        re.compile(
            r"(?P<head>-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)[^-]*+"
            r"(?P<tail>-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        _pem_block,
    ),
    (
        "secret header",
        re.compile(rf"(?i)(?<![\w-])(?P<key>(?:{_SECRET_HEADERS})[ \t]*+[:=][ \t]*+)[^\r\n'\"]++"),
        rf"\g<key>{MASK}",
    ),
    (
        "secret key=value",
        re.compile(
            rf"""(?ix)
            (?<![\w.-])
            (?P<key>
                (?>{_KEY_CHARS}*?(?:{_SECRET_KEY_WORDS})){_KEY_CHARS}*+
                (?:{_QUOTED})?[ \t]*+(?::=|=>|[:=])[ \t]*+
            )
            (?P<value>
                "(?:[^"\\\n]|\\.)*+"
                | '[^'\n]*+'
                | \\"(?:[^"\\\n]|\\[^"\n])*+\\"
                | [^\s,;&}}"'\\]++
            )
            """
        ),
        _keyed_value,
    ),
    (
        "URL signature",
        re.compile(rf"(?i)(?<![\w-])(?P<key>(?:{_SIGNATURE_PARAMS})=)[^\s&\"'#<>]++"),
        rf"\g<key>{MASK}",
    ),
    ("URL password", re.compile(r"://[^\s'\"<>`]++"), _url_passwords),
    (
        "authorization scheme",
        re.compile(r"(?i)\b(?P<scheme>bearer|basic|token)[ \t]++[A-Za-z0-9\-._~+/]{8,}+=*+"),
        rf"\g<scheme> {MASK}",
    ),
    (
        "JSON web token",
        re.compile(r"(?<![\w-])eyJ[\w-]*+\.[\w-]++(?:\.[\w\-+/=]*+)?"),
        MASK,
    ),
    ("Slack token", re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]{6,}+"), MASK),
    ("GitHub fine-grained token", re.compile(r"\bgithub_pat_\w{20,}+"), MASK),
    ("GitHub token", re.compile(r"\bgh[pousr]_\w{20,}+"), MASK),
    ("Stripe key", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_\w{10,}+"), MASK),
    ("AWS access key ID", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), MASK),
    ("Slack webhook", re.compile(r"(?<=hooks\.slack\.com/services/)[\w/]++"), MASK),
    ("PyPI token", re.compile(r"\bpypi-[\w-]{50,}+"), MASK),
    ("npm token", re.compile(r"\bnpm_\w{30,}+"), MASK),
]

# A token of base64 / URL-safe characters long enough to be a key.
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{32,}+")
ENTROPY_BITS = 4.2  # per character; see :func:`looks_random`


def looks_random(token: str) -> bool:
    """Whether a 32+ character token is a key rather than something people read.

    A key mixes upper case, lower case and digits and is close to random (Shannon entropy at
    least :data:`ENTROPY_BITS` per character). Git SHAs, image digests and UUIDs (hex: no
    upper case), Kubernetes names (lower case, dashes) and words joined by ``_``/``-``/``/``
    fail one test or the other and are left as they are.
    """
    if not (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    ):
        return False
    if all(len(part) < 16 for part in re.split(r"[/_-]", token)):
        return False  # path segments or identifiers joined by separators
    counts = Counter(token)
    entropy = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return entropy >= ENTROPY_BITS


def _random_token(match: re.Match[str]) -> str:
    return MASK if looks_random(match[0]) else match[0]


ENTROPY_SHAPE: tuple[str, re.Pattern[str], Replacement] = (
    "high-entropy token",
    _TOKEN,
    _random_token,
)


def backtracking_budget(pattern: re.Pattern[str]) -> float:
    """An estimate of the most steps ``pattern`` may take from one starting position.

    Infinite when a repeat is unbounded; otherwise the number of ways its repeats can split
    a text (the product of their ranges) times the longest match. Alternatives count by the
    most ways any one of them has: the plugins' alternatives are literals that exclude one
    another, so a failure after one of them does not retry the rest.
    """
    parser: Any = importlib.import_module("re._parser")
    constants: Any = importlib.import_module("re._constants")

    def walk(items: Any) -> tuple[float, float]:
        choices, longest = 1.0, 0.0
        for op, av in items:
            if op in (constants.MAX_REPEAT, constants.MIN_REPEAT, constants.POSSESSIVE_REPEAT):
                low, high, sub = av
                if high == constants.MAXREPEAT:
                    return math.inf, math.inf
                inner, length = walk(sub)
                if op is not constants.POSSESSIVE_REPEAT:
                    choices *= (high - low + 1) * inner**high
                longest += high * length
            elif op is constants.SUBPATTERN:
                inner, length = walk(av[3])
                choices, longest = choices * inner, longest + length
            elif op is constants.BRANCH:
                walked = [walk(branch) for branch in av[1]]
                choices *= max(c for c, _ in walked)
                longest += max(n for _, n in walked)
            elif op in (constants.ASSERT, constants.ASSERT_NOT):
                longest += walk(av[1])[1]
            elif op is constants.ATOMIC_GROUP:
                longest += walk(av)[1]
            else:
                longest += 1
        return choices, longest

    choices, longest = walk(parser.parse(pattern.pattern, pattern.flags))
    return choices * max(longest, 1.0)


def detector_patterns() -> Iterator[tuple[str, re.Pattern[str], bool]]:
    """Every denylist pattern of detect-secrets' regex plugins: (plugin, pattern, adopted)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    plugin: Any  # detect-secrets declares ``denylist`` as an abstract property
    for plugin in get_mapping_from_secret_type_to_class().values():
        if not issubclass(plugin, RegexBasedDetector) or plugin.__name__ in _NOT_ADOPTED:
            continue
        for pattern in plugin.denylist:
            yield plugin.__name__, pattern, backtracking_budget(pattern) <= BUDGET


def adopted_shapes() -> list[tuple[str, re.Pattern[str], Replacement]]:
    """The detect-secrets patterns that are safe to run on any input, whole match masked."""
    return [(name, pattern, MASK) for name, pattern, ok in detector_patterns() if ok]
