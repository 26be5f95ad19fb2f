"""Hostile input for the running bot: signed slash texts, garbled clicks and modal submits,
raw bodies; each sent through the bot's HTTP edge and judged by what came back.

A request is *answered* when the HTTP answer is a 400/401, or a 200 whose body says
something (an ephemeral ack, a modal's errors), or when a reply reached its response_url.
``tests/test_hostile_input.py`` and ``benchmarks/fuzz_input.py`` share it.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from bot.domain.inputs import NAME_MAX, VERSION_MAX
from bot.rendering.ids import ActionId, InputId, ViewId
from bot.slack.edge import SlackEdge
from tests.e2e import SECRET, RunningBot

WENT_WRONG = "Something went wrong"
OUTSIDER = "U0OUTSIDER"  # no role in examples/minimal.yaml
DEPLOYER = "U0DEPLOYER"
ACK_DEADLINE = 2.5  # seconds; Slack waits 3 for the HTTP answer


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str
    reply: str | None  # the text sent to the response_url, when one came
    seconds: float = 0.0  # until the HTTP answer

    @property
    def answered(self) -> bool:
        """Answered, and within Slack's 3 seconds (after them Slack shows an error)."""
        in_time = self.seconds < ACK_DEADLINE
        return in_time and (self.status in (400, 401) or bool(self.body) or self.reply is not None)

    @property
    def went_wrong(self) -> bool:
        return WENT_WRONG in self.body or WENT_WRONG in (self.reply or "")


@dataclass
class Tally:
    """Counts of what the bot answered; ``bad`` keeps the first few failures for the report."""

    sent: int = 0
    server_errors: int = 0
    unanswered: int = 0
    went_wrong: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[tuple[str, Outcome]] = field(default_factory=list)

    def add(self, what: str, outcome: Outcome) -> None:
        self.sent += 1
        self.statuses[outcome.status] += 1
        failed = False
        if outcome.status >= 500:
            self.server_errors += 1
            failed = True
        if not outcome.answered or outcome.status == 404:
            self.unanswered += 1
            failed = True
        if outcome.went_wrong:
            self.went_wrong += 1
            failed = True
        if failed and len(self.bad) < 10:
            self.bad.append((what[:300], outcome))

    @property
    def clean(self) -> bool:
        return self.server_errors == self.unanswered == self.went_wrong == 0


class Hostile:
    """Sends signed requests to ``bot`` in process (through :class:`SlackEdge`, the path the
    WSGI adapter takes) or over HTTP, and waits for the answer."""

    def __init__(self, bot: RunningBot, *, http: bool = False, wait: float = 5.0) -> None:
        self.bot = bot
        self.http = http
        self.wait = wait
        self.edge = SlackEdge(bot.bot.app, SECRET)
        self._seq = itertools.count(1)

    def name(self) -> str:
        return f"hostile-{next(self._seq)}"

    def send(
        self,
        raw: bytes,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: str | None = None,
        signed: bool = True,
        reply: str | None = None,
    ) -> Outcome:
        """Send ``raw``; ``reply`` names the response_url it carries (waited for on a 200
        whose body is empty)."""
        ts = timestamp if timestamp is not None else str(int(time.time()))
        text = raw.decode("utf-8", "replace")
        signature = self.bot.slack.verifier.generate_signature(timestamp=ts, body=text)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": (signature or "") if signed else "v0=forged",
        }
        started = time.monotonic()
        if self.http:
            status, body = self._post(raw, headers)
        else:
            response = self.edge.answer(raw, headers)
            status, body = response.status, response.body
        seconds = time.monotonic() - started
        got = None
        if status == 200 and not body and reply is not None:
            got = self._reply(reply)
        return Outcome(status, body, got, seconds)

    def command(self, text: str, user: str) -> Outcome:
        name = self.name()
        form = {
            "token": "verification-token",
            "team_id": "T0TEAM",
            "channel_id": "C0DEPLOYS",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/deploy",
            "text": text,
            "response_url": self.bot.fake.response_url(name),
            "trigger_id": f"{time.time():.6f}.{name}",
        }
        return self.send(urlencode(form).encode(), reply=name)

    def payload(self, payload: Any, reply: str | None = None) -> Outcome:
        return self.send(urlencode({"payload": json.dumps(payload)}).encode(), reply=reply)

    def _post(self, raw: bytes, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(self.bot.slack.url, data=raw, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.status, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode("utf-8", "replace")

    def _reply(self, name: str) -> str | None:
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            for call in self.bot.fake.calls("response_url"):
                if call.path.endswith(f"/{name}"):
                    return str(call.params.get("text") or call.params.get("blocks") or "")
            time.sleep(0.01)
        return None


# -- strategies -------------------------------------------------------------------------------

SUBCOMMANDS = ["start", "status", "list", "probe", "abort", "report", "lock", "unlock", "help"]
NASTY = [
    "",
    "#",
    "²",
    "١٢",
    "1.5",
    "-1",
    "0",
    "99999999999999999999",
    "2147483648",
    "\x00",
    "a\x00b",
    "`",
    "payload",
    "staging",
    "prod",
    "#1",
    "1",
    "x" * (NAME_MAX + 1),
    "v" * (VERSION_MAX + 1),
    "\u202e",
    "\ufeff",
    "<!channel>",
    "*bold*",
]
words = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
slash_texts = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda sub, rest, sep: sep.join([sub, *rest]),
        st.sampled_from(SUBCOMMANDS) | st.text(max_size=10),
        st.lists(words, max_size=5),
        st.sampled_from([" ", "  ", "\t", "\n", "\u00a0"]),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ACTION_IDS = [a.value for a in ActionId]
action_values = st.one_of(st.sampled_from(NASTY), st.text(max_size=20)) | st.builds(
    lambda a, b: f"{a}|{b}", st.sampled_from(NASTY), st.text(max_size=10)
)


def click_payload(
    user: str, action_id: str, value: str, response_url: str, seq: str
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it (trigger and action_ts unique per ``seq``)."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "team": {"id": "T0TEAM", "domain": "team"},
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": "C0DEPLOYS"},
        "channel": {"id": "C0DEPLOYS", "name": "deploys"},
        "trigger_id": f"{seq}.trigger",
        "response_url": response_url,
        "message": {"type": "message", "ts": "1.000001", "text": "", "blocks": []},
        "state": {"values": {}},
        "actions": [
            {
                "action_id": action_id,
                "block_id": value if action_id == ActionId.TICK else "actions",
                "type": "checkboxes" if action_id == ActionId.TICK else "button",
                "value": value,
                "action_ts": f"{seq}.ts",
            }
        ],
    }


# The parts of a click a fuzzer garbles: not the response_url, trigger_id or action_ts, which
# the judge and the inbox need to tell requests apart.
GARBLED = [
    ("user",),
    ("user", "id"),
    ("team",),
    ("channel",),
    ("container",),
    ("message",),
    ("message", "blocks"),
    ("actions",),
    ("actions", 0),
    ("actions", 0, "action_id"),
    ("actions", 0, "block_id"),
    ("actions", 0, "value"),
    ("actions", 0, "selected_options"),
    ("actions", 0, "selected_option"),
    ("type",),
    ("state",),
]


def garble(payload: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``payload`` with the part at ``path`` replaced by ``value`` (dropped when it is
    :data:`DROP`), where that part's parents exist."""
    garbled = json.loads(json.dumps(payload))
    target = garbled
    for step in path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            return garbled
    if not isinstance(target, dict | list):
        return garbled
    if value is DROP and isinstance(target, dict):
        target.pop(path[-1], None)
    elif isinstance(target, dict) or (isinstance(path[-1], int) and path[-1] < len(target)):
        target[path[-1]] = None if value is DROP else value
    return garbled


DROP = object()


def submit_payload(
    user: str, callback_id: str, metadata: Any, values: Any, seq: str
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": f"V{seq}",
        "team_id": "T0TEAM",
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "hash": f"{seq}.hash",
        "blocks": [],
    }
    if values is not DROP:
        view["state"] = {"values": values}
    return {
        "type": "view_submission",
        "team": {"id": "T0TEAM", "domain": "team"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "trigger_id": f"{seq}.trigger",
        "view": view,
    }


VIEW_IDS = [v.value for v in ViewId]
modal_values = st.one_of(
    st.just(DROP),
    json_values,
    st.builds(
        lambda item, reason: {
            InputId.SKIP_ITEM.value: {
                InputId.SKIP_ITEM.value: {"type": "static_select", "selected_option": item}
            },
            InputId.SKIP_REASON.value: {
                InputId.SKIP_REASON.value: {"type": "plain_text_input", "value": reason}
            },
            InputId.ABORT_REASON.value: {
                InputId.ABORT_REASON.value: {"type": "plain_text_input", "value": reason}
            },
        },
        json_values | st.builds(lambda v: {"value": v}, st.text(max_size=10)),
        json_values | st.sampled_from(["", "x" * 1001, "ok\x00", "flaky probe"]),
    ),
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [
            b"payload=",
            b"payload=%5B%5D",
            b"payload=null",
            b"payload=%7B",
            b"payload=%7B%7D",
            b'{"type": "url_verification"}',
            b"[]",
            b"{}",
            b"command=%2Fdeploy",
            b"command=%2Fother&user_id=U1&text=x",
            b"\xff\xfe\x00",
            b"text=" + b"%" * 50,
            b"[" * 5000,
        ]
    ),
)
content_types = st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "text/plain", ""]
)
timestamps = st.one_of(
    st.none(),
    st.sampled_from(["abc", "1795691010.5", "", "-1", "١٢٣", "1_000", " 1 ", "9" * 40]),
)
