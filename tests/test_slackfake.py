"""The Slack test infrastructure, proven with slack_sdk's real WebClient and a real Bolt app."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.support.slack import FakeSlack, ServedApp, SlackRequests, serve_wsgi

SIGNING_SECRET = "test-signing-secret"
TS = re.compile(r"^\d{10}\.\d{6}$")
FAKE_CHANNEL_ID = re.compile(r"^C[0-9A-F]{10}$")

CHECKLIST_BLOCKS: list[dict[str, Any]] = [
    {
        "type": "section",
        "block_id": "item-3",
        "text": {"type": "mrkdwn", "text": "Run database migrations"},
        "accessory": {
            "type": "button",
            "action_id": "checklist_tick",
            "value": "item-3",
            "text": {"type": "plain_text", "text": "Done"},
        },
    }
]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


def slack_error(error: SlackApiError) -> str:
    return str(error.response["error"])


# -- the fake Web API ------------------------------------------------------------------------


def test_base_url_is_loopback_on_an_os_chosen_port(fake: FakeSlack) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", fake.base_url)
    with FakeSlack() as other:
        assert other.base_url != fake.base_url


def test_auth_test_answers_like_slack_and_refuses_a_wrong_token(
    fake: FakeSlack, client: WebClient
) -> None:
    reply = client.auth_test()
    assert reply.data == {
        "ok": True,
        "url": "https://test.slack.com/",
        "team": "Test",
        "user": "deploybot",
        "team_id": "T0TEST",
        "user_id": "U0BOT",
        "bot_id": "B0BOT",
        "is_enterprise_install": False,
    }
    assert fake.last("auth.test").headers["authorization"] == "Bearer xoxb-test"

    intruder = WebClient(token="xoxb-stolen", base_url=fake.base_url)
    with pytest.raises(SlackApiError) as refused:
        intruder.auth_test()
    assert refused.value.response.data == {"ok": False, "error": "invalid_auth"}
    with pytest.raises(SlackApiError) as refused:
        intruder.chat_postMessage(channel="#deploys", text="nope")
    assert slack_error(refused.value) == "invalid_auth"
    assert fake.messages("#deploys") == []


def test_post_message_then_update_changes_the_stored_message(
    fake: FakeSlack, client: WebClient
) -> None:
    first = client.chat_postMessage(channel="#deploys", text="Checklist", blocks=CHECKLIST_BLOCKS)
    second = client.chat_postMessage(channel="#deploys", text="Summary")

    channel = first["channel"]
    assert FAKE_CHANNEL_ID.match(channel)
    assert second["channel"] == channel  # a name maps to one stable ID
    assert TS.match(first["ts"]) and TS.match(second["ts"])
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["text"] == "Checklist"
    assert first["message"]["blocks"] == CHECKLIST_BLOCKS
    assert first["message"]["user"] == "U0BOT"
    # slack_sdk sends chat.postMessage as JSON: blocks arrive as objects.
    sent = fake.calls("chat.postMessage")[0]
    assert sent.headers["content-type"].startswith("application/json")
    assert sent.params == {"channel": "#deploys", "text": "Checklist", "blocks": CHECKLIST_BLOCKS}

    ticked = [{**CHECKLIST_BLOCKS[0], "text": {"type": "mrkdwn", "text": "~Run migrations~"}}]
    updated = client.chat_update(channel=channel, ts=first["ts"], text="Ticked", blocks=ticked)
    assert updated["ts"] == first["ts"]
    assert updated["message"]["blocks"] == ticked
    assert float(updated["message"]["edited"]["ts"]) > float(second["ts"])

    messages = fake.messages("#deploys")
    assert messages == fake.messages(channel)
    assert [(m.ts, m.text, m.blocks, m.edits) for m in messages] == [
        (first["ts"], "Ticked", ticked, 1),
        (second["ts"], "Summary", [], 0),
    ]
    assert fake.channels[channel] == "deploys"

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel=channel, ts="1600000000.000001", text="lost")
    assert slack_error(missing.value) == "message_not_found"


def test_update_keeps_fields_it_was_not_given(fake: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0DEPLOYS", text="Checklist", blocks=CHECKLIST_BLOCKS)
    assert posted["channel"] == "C0DEPLOYS"  # an ID is used as it is
    client.chat_update(channel="C0DEPLOYS", ts=posted["ts"], text="Checklist (2/9)")
    [message] = fake.messages("C0DEPLOYS")
    assert (message.text, message.blocks) == ("Checklist (2/9)", CHECKLIST_BLOCKS)


def test_form_encoded_json_fields_are_decoded(fake: FakeSlack, client: WebClient) -> None:
    client.api_call(
        "chat.postMessage",
        data={"channel": "#deploys", "text": "form", "blocks": json.dumps(CHECKLIST_BLOCKS)},
    )
    view = {
        "type": "modal",
        "callback_id": "skip_reason",
        "title": {"type": "plain_text", "text": "Skip"},
    }
    client.api_call("views.open", data={"trigger_id": "1.2.abc", "view": json.dumps(view)})

    post = fake.last("chat.postMessage")
    assert post.headers["content-type"] == "application/x-www-form-urlencoded"
    assert post.params == {"channel": "#deploys", "text": "form", "blocks": CHECKLIST_BLOCKS}
    assert fake.last("views.open").params == {"trigger_id": "1.2.abc", "view": view}
    assert fake.messages("#deploys")[0].blocks == CHECKLIST_BLOCKS


def test_thread_replies_are_grouped_under_their_parent(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="#deploys", text="Deploy #7 started")
    channel = parent["channel"]
    client.chat_postMessage(channel=channel, thread_ts=parent["ts"], text="Pre-Deployment")
    other = client.chat_postMessage(channel=channel, text="Deploy #8 started")
    client.chat_postMessage(channel=channel, thread_ts=parent["ts"], text="Deployment Steps")
    client.chat_postMessage(
        channel=channel, thread_ts=other["ts"], text="#8 failed", reply_broadcast=True
    )

    assert [m.text for m in fake.messages(channel)] == [
        "Deploy #7 started",
        "Deploy #8 started",
        "#8 failed",  # broadcast replies also show in the channel
    ]
    thread = fake.thread(channel, parent["ts"])
    assert [m.text for m in thread] == ["Deploy #7 started", "Pre-Deployment", "Deployment Steps"]
    assert {m.thread_ts for m in thread[1:]} == {parent["ts"]}
    assert [m.text for m in fake.thread(channel, other["ts"])] == ["Deploy #8 started", "#8 failed"]


def test_ephemeral_messages_are_recorded_per_user(fake: FakeSlack, client: WebClient) -> None:
    reply = client.chat_postEphemeral(
        channel="C0DEPLOYS", user="U0DEPLOYER", text="prod is locked: `/deploy unlock prod`"
    )
    client.chat_postEphemeral(channel="C0DEPLOYS", user="U0QA", text="not yours to sign")

    assert TS.match(reply["message_ts"])
    [mine] = fake.ephemerals("U0DEPLOYER")
    assert (mine.channel, mine.user, mine.message_ts, mine.text) == (
        "C0DEPLOYS",
        "U0DEPLOYER",
        reply["message_ts"],
        "prod is locked: `/deploy unlock prod`",
    )
    assert [e.user for e in fake.ephemerals()] == ["U0DEPLOYER", "U0QA"]
    assert fake.messages("C0DEPLOYS") == []  # nobody else sees them


def test_views_open_update_and_push(fake: FakeSlack, client: WebClient) -> None:
    view = {
        "type": "modal",
        "callback_id": "skip_reason",
        "private_metadata": "session=7;item=3",
        "title": {"type": "plain_text", "text": "Skip item"},
        "blocks": [],
    }
    opened = client.views_open(trigger_id="1.2.abc", view=view)["view"]
    assert re.fullmatch(r"V[0-9A-F]{8}", opened["id"])
    assert opened["callback_id"] == "skip_reason"
    assert opened["private_metadata"] == "session=7;item=3"
    assert opened["state"] == {"values": {}}

    changed = {**view, "title": {"type": "plain_text", "text": "Skip item 3"}}
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=changed)["view"]
    assert updated["id"] == opened["id"]
    assert fake.views()[opened["id"]]["title"]["text"] == "Skip item 3"
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=view)
    assert slack_error(stale.value) == "hash_conflict"
    with pytest.raises(SlackApiError) as unknown:
        client.views_update(view_id="V0NOPE", view=view)
    assert slack_error(unknown.value) == "not_found"

    pushed = client.views_push(trigger_id="1.2.def", view=view)["view"]
    assert pushed["id"] != opened["id"]
    assert fake.last("views.push").params["view"] == view


def test_users_usergroups_and_conversations(fake: FakeSlack, client: WebClient) -> None:
    fake.usergroups = {"S0PLATFORM": ["U1", "U2"], "S0QA": ["U3"]}
    fake.usergroup_handles = {"S0PLATFORM": "platform-leads"}
    fake.users["U2"] = {"real_name": "Ada Lovelace"}

    assert client.usergroups_users_list(usergroup="S0PLATFORM")["users"] == ["U1", "U2"]
    groups = client.usergroups_list(include_users=True)["usergroups"]
    assert [(g["id"], g["handle"], g["users"]) for g in groups] == [
        ("S0PLATFORM", "platform-leads", ["U1", "U2"]),
        ("S0QA", "s0qa", ["U3"]),
    ]
    with pytest.raises(SlackApiError) as unknown:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert slack_error(unknown.value) == "no_such_subteam"
    assert fake.last("usergroups.users.list").params == {"usergroup": "S0NOPE"}

    user = client.users_info(user="U2")["user"]
    assert (user["id"], user["name"], user["real_name"], user["tz"]) == (
        "U2",
        "u2",
        "Ada Lovelace",
        "UTC",
    )

    channel = client.chat_postMessage(channel="#deploys", text="hi")["channel"]
    info = client.conversations_info(channel=channel)["channel"]
    assert (info["id"], info["name"], info["is_member"]) == (channel, "deploys", True)


def test_unknown_methods_and_injected_failures(fake: FakeSlack, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("chat.frobnicate", json={"channel": "C1"})
    assert slack_error(unknown.value) == "unknown_method"

    fake.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as failed:
        client.chat_postMessage(channel="#gone", text="first")
    assert slack_error(failed.value) == "channel_not_found"
    client.chat_postMessage(channel="#gone", text="second")

    assert [c.params["text"] for c in fake.calls("chat.postMessage")] == ["first", "second"]
    assert [m.text for m in fake.messages("#gone")] == ["second"]


def test_rate_limited_call_is_retried_after_retry_after(fake: FakeSlack) -> None:
    client = WebClient(
        token="xoxb-test",
        base_url=fake.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    fake.rate_limit("chat.update", times=1, retry_after=1)
    posted = client.chat_postMessage(channel="#deploys", text="3/9 done")

    started = time.monotonic()
    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="4/9 done")
    assert time.monotonic() - started >= 1.0
    assert updated["ok"] and updated["message"]["text"] == "4/9 done"

    first, second = fake.calls("chat.update")
    assert second.at - first.at >= 1.0
    assert (
        first.params
        == second.params
        == {
            "channel": posted["channel"],
            "ts": posted["ts"],
            "text": "4/9 done",
        }
    )
    assert [m.text for m in fake.messages("#deploys")] == ["4/9 done"]


def test_rate_limit_without_a_retry_handler_surfaces_the_429(fake: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=fake.base_url, retry_handlers=[])
    fake.rate_limit("chat.postMessage", times=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            client.chat_postMessage(channel="#deploys", text="burst")
        assert limited.value.response.status_code == 429
        assert limited.value.response.data == {"ok": False, "error": "ratelimited"}
        headers = {k.lower(): v for k, v in limited.value.response.headers.items()}
        assert headers["retry-after"] in ("7", ["7"])
    client.chat_postMessage(channel="#deploys", text="burst")
    assert len(fake.calls("chat.postMessage")) == 3
    assert [m.text for m in fake.messages("#deploys")] == ["burst"]


def test_response_url_posts_are_recorded(fake: FakeSlack) -> None:
    url = fake.response_url("command-1")
    assert url.startswith(fake.url + "/response/")
    reply = WebhookClient(url).send(text="Session #7 opened", response_type="ephemeral")
    assert reply.status_code == 200

    call = fake.last("response_url")
    assert call.path == "/response/command-1"
    assert call.params == {"text": "Session #7 opened", "response_type": "ephemeral"}

    fake.fail("response_url", error="expired_url")
    assert WebhookClient(url).send(text="late").status_code == 404


def test_wait_for_sees_calls_made_later_and_times_out_with_what_it_saw(
    fake: FakeSlack, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="#deploys", text="hello")
    worker = threading.Timer(
        0.1, lambda: client.chat_update(channel=posted["channel"], ts=posted["ts"], text="bye")
    )
    worker.start()
    [update] = fake.wait_for("chat.update", timeout=5.0)
    worker.join()
    assert update.params["text"] == "bye"

    with pytest.raises(AssertionError) as timed_out:
        fake.wait_for("views.open", timeout=0.2)
    message = str(timed_out.value)
    assert "waited 0.2s for 1 views.open call(s), got 0" in message
    assert 'chat.postMessage {"channel": "#deploys", "text": "hello"}' in message
    assert "chat.update" in message


def test_reset_forgets_traffic_but_keeps_configuration(fake: FakeSlack, client: WebClient) -> None:
    fake.usergroups = {"S0QA": ["U3"]}
    before = client.chat_postMessage(channel="#deploys", text="one")
    fake.rate_limit("chat.postMessage", times=5)
    fake.reset()

    assert fake.calls() == []
    assert fake.messages("#deploys") == []
    after = client.chat_postMessage(channel="#deploys", text="two")  # no pending 429 left
    assert float(after["ts"]) > float(before["ts"])
    assert after["channel"] == before["channel"]
    assert client.usergroups_users_list(usergroup="S0QA")["users"] == ["U3"]


# -- signed requests to a real Bolt app ------------------------------------------------------


def test_signature_matches_slacks_documented_example() -> None:
    # The worked example in Slack's "Verifying requests from Slack" documentation.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = (
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        "&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        "commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signer = SlackRequests(secret, "http://127.0.0.1:1/slack/events")
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert signer.sign(body, 1531420618) == expected
    digest = hmac.new(secret.encode(), f"v0:1531420618:{body}".encode(), hashlib.sha256)
    assert expected == "v0=" + digest.hexdigest()


@dataclass
class BoltUnderTest:
    """A Bolt app served over HTTP, its Slack, and what its listeners saw."""

    fake: FakeSlack
    served: ServedApp
    slack: SlackRequests
    seen: queue.Queue[tuple[str, dict[str, Any]]]

    def next_seen(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        return self.seen.get(timeout=timeout)


@pytest.fixture
def bolt(fake: FakeSlack, client: WebClient) -> Iterator[BoltUnderTest]:
    app = App(client=client, signing_secret=SIGNING_SECRET)
    seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    @app.command("/deploy")
    def on_deploy(
        ack: Ack, command: dict[str, Any], request: BoltRequest, respond: Respond
    ) -> None:
        ack(f"On it: {command['text']}")
        seen.put(("command", {"command": command, "headers": dict(request.headers)}))
        respond(f"Session for `{command['text']}` opened")

    @app.action(re.compile(".+"))
    def on_action(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.put(("action", body))
        if body.get("message"):
            who = body["user"]["id"]
            client.chat_update(
                channel=body["channel"]["id"], ts=body["message"]["ts"], text=f"ticked by {who}"
            )

    @app.view("skip_reason")
    def on_skip_reason(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.put(("view", body))

    with serve_wsgi(SlackRequestHandler(app)) as served:
        yield BoltUnderTest(
            fake=fake,
            served=served,
            slack=SlackRequests(SIGNING_SECRET, served.events_url, fake=fake),
            seen=seen,
        )


def test_signed_command_reaches_the_listener(bolt: BoltUnderTest) -> None:
    url = bolt.fake.response_url("start")
    reply = bolt.slack.command("start prod api v1.4.2", user_id="U0DEPLOYER", response_url=url)

    assert reply.status == 200
    assert reply.body == "On it: start prod api v1.4.2"  # Bolt answers a text-only ack as text
    kind, seen = bolt.next_seen()
    command = seen["command"]
    assert kind == "command"
    assert {k: command[k] for k in ("command", "text", "user_id", "channel_id", "team_id")} == {
        "command": "/deploy",
        "text": "start prod api v1.4.2",
        "user_id": "U0DEPLOYER",
        "channel_id": "C0DEPLOYS",
        "team_id": "T0TEST",
    }
    assert command["response_url"] == url
    assert command["trigger_id"]
    assert "x-slack-retry-num" not in seen["headers"]
    [responded] = bolt.fake.wait_for("response_url")
    assert responded.path == "/response/start"
    assert responded.params["text"] == "Session for `start prod api v1.4.2` opened"


def test_forged_or_wrongly_keyed_requests_get_401_and_run_nothing(bolt: BoltUnderTest) -> None:
    forged = bolt.slack.command("abort 7", user_id="U0EVE", signature="v0=" + "0" * 64)
    wrong_key = SlackRequests("not-the-secret", bolt.served.events_url).command(
        "abort 7", user_id="U0EVE"
    )
    assert (forged.status, wrong_key.status) == (401, 401)

    # The next genuine command is the first thing any listener sees.
    assert bolt.slack.command("status", user_id="U0DEPLOYER").status == 200
    kind, seen = bolt.next_seen()
    assert (kind, seen["command"]["text"], seen["command"]["user_id"]) == (
        "command",
        "status",
        "U0DEPLOYER",
    )
    assert bolt.seen.empty()


def test_request_older_than_five_minutes_gets_401(bolt: BoltUnderTest) -> None:
    six_minutes_ago = int(time.time()) - 6 * 60
    stale = bolt.slack.command("start prod", user_id="U0DEPLOYER", timestamp=six_minutes_ago)
    assert stale.status == 401
    assert bolt.slack.command("list", user_id="U0DEPLOYER").status == 200
    assert bolt.next_seen()[1]["command"]["text"] == "list"
    assert bolt.seen.empty()


def test_retries_carry_slacks_retry_headers_and_the_same_body(bolt: BoltUnderTest) -> None:
    first = bolt.slack.command("start prod", user_id="U0DEPLOYER")
    again = bolt.slack.post(first.request_body, retry_num=1)
    assert (first.status, again.status) == (200, 200)

    original, retried = bolt.next_seen()[1], bolt.next_seen()[1]
    assert retried["command"] == original["command"]  # same trigger_id: one gesture
    assert retried["headers"]["x-slack-retry-num"] == ["1"]
    assert retried["headers"]["x-slack-retry-reason"] == ["http_timeout"]


def test_block_action_reaches_the_listener_with_the_clicked_element(
    bolt: BoltUnderTest, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="#deploys", text="Checklist", blocks=CHECKLIST_BLOCKS)
    [message] = bolt.fake.messages("#deploys")

    reply = bolt.slack.block_action(
        user_id="U0OPERATOR",
        action_id="checklist_tick",
        channel_id=posted["channel"],
        message_ts=posted["ts"],
        message=message,
    )
    assert reply.status == 200
    kind, body = bolt.next_seen()
    assert kind == "action"
    [action] = body["actions"]
    assert {k: v for k, v in action.items() if k != "action_ts"} == {
        "action_id": "checklist_tick",
        "block_id": "item-3",
        "type": "button",
        "value": "item-3",
        "text": {"type": "plain_text", "text": "Done"},
    }
    assert body["type"] == "block_actions"
    assert body["user"]["id"] == "U0OPERATOR"
    assert body["container"] == {
        "type": "message",
        "message_ts": posted["ts"],
        "channel_id": posted["channel"],
        "is_ephemeral": False,
    }
    assert body["message"]["ts"] == posted["ts"]
    assert body["message"]["blocks"] == CHECKLIST_BLOCKS
    assert body["response_url"].startswith(bolt.fake.url + "/response/action-")

    # The listener's chat.update lands on the message the user clicked.
    [update] = bolt.fake.wait_for("chat.update")
    assert update.params == {
        "channel": posted["channel"],
        "ts": posted["ts"],
        "text": "ticked by U0OPERATOR",
        "team_id": "T0TEST",  # Bolt's listener client adds the workspace
    }
    assert [m.text for m in bolt.fake.messages("#deploys")] == ["ticked by U0OPERATOR"]


def test_select_action_carries_the_selected_option(bolt: BoltUnderTest) -> None:
    option = {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}
    reply = bolt.slack.block_action(
        user_id="U0DEPLOYER",
        action_id="env_select",
        block_id="env",
        selected_option=option,
        channel_id="C0DEPLOYS",
        message_ts="1700000000.000100",
        is_ephemeral=True,
    )
    assert reply.status == 200
    body = bolt.next_seen()[1]
    [action] = body["actions"]
    assert (action["action_id"], action["block_id"], action["type"]) == (
        "env_select",
        "env",
        "static_select",
    )
    assert action["selected_option"] == option
    assert "value" not in action
    assert body["container"]["is_ephemeral"] is True
    assert "message" not in body


def test_view_submission_reaches_the_view_listener(bolt: BoltUnderTest) -> None:
    values = {"reason": {"reason_input": {"type": "plain_text_input", "value": "probe is flaky"}}}
    reply = bolt.slack.view_submission(
        user_id="U0OPERATOR",
        callback_id="skip_reason",
        private_metadata="session=7;item=3",
        values=values,
        view_id="V0SKIP",
    )
    assert reply.status == 200
    kind, body = bolt.next_seen()
    assert kind == "view"
    assert body["type"] == "view_submission"
    assert body["user"]["id"] == "U0OPERATOR"
    view = body["view"]
    assert (view["id"], view["callback_id"], view["private_metadata"]) == (
        "V0SKIP",
        "skip_reason",
        "session=7;item=3",
    )
    assert view["state"] == {"values": values}
