"""Runbook Markdown as Slack shows it: mrkdwn for item text, plain text for plain_text fields,
and cuts that never leave a marker open."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rendering.limits import json_len, width
from bot.rendering.mrkdwn import clip_mrkdwn, split_mrkdwn, to_mrkdwn, to_plain


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("plain words", "plain words"),
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*em* and _em_", "_em_ and _em_"),
        ("***both***", "_*both*_"),
        ("~~gone~~", "~gone~"),
        ("run `make deploy`", "run `make deploy`"),
        ("`a & <b>`", "`a &amp; &lt;b&gt;`"),
        (
            "[the runbook](https://wiki.example/run?a=1&b=2)",
            "<https://wiki.example/run?a=1&amp;b=2|the runbook>",
        ),
        ("[**bold** link](https://x.example)", "<https://x.example|bold link>"),
        ("<https://status.example/api>", "<https://status.example/api>"),
        ("<ops@example.com>", "<mailto:ops@example.com>"),
        ("![graph](https://img.example/g.png)", "<https://img.example/g.png|graph>"),
        ("## Verify the rollout", "*Verify the rollout*"),
        (r"\*not bold\* and \_not\_ and \`x\`", "*not bold* and _not_ and `x`"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("<!channel> <@U0BOSS>", "&lt;!channel&gt; &lt;@U0BOSS&gt;"),
        ("<b>html</b>", "&lt;b&gt;html&lt;/b&gt;"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("line one\nline two", "line one line two"),
    ],
)
def test_commonmark_inline_syntax_becomes_slack_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "plain"),
    [
        ("**Pre**-deployment", "Pre-deployment"),
        ("Check [status](https://s.example) `curl -f`", "Check status `curl -f`"),
        ("## Rollout", "Rollout"),
        ("a & <b>", "a & <b>"),
    ],
)
def test_plain_text_drops_the_markup(markdown: str, plain: str) -> None:
    assert to_plain(markdown) == plain


@pytest.mark.parametrize(
    ("markdown", "limit", "head", "rest"),
    [
        ("short", 75, "short", None),
        (
            "Run `kubectl rollout status deploy/api` now",
            30,
            "Run `kubectl rollout status`…",
            "…`deploy/api` now",
        ),
        ("**Wait for all the pods** to be ready", 16, "*Wait for all*…", "…*the pods* to be ready"),
        (
            "see [the docs](https://d.example/x) then go",
            20,
            "see…",
            "…<https://d.example/x|the docs> then go",
        ),
        ("a&b&c&d&e&f", 8, "a&amp;b…", "…&amp;c&amp;d&amp;e&amp;f"),
        ("**x** then a long tail of words", 6, "*x*…", "…then a long tail of words"),
    ],
)
def test_a_cut_closes_what_it_opened_and_the_rest_reopens_it(
    markdown: str, limit: int, head: str, rest: str | None
) -> None:
    assert split_mrkdwn(markdown, limit, rest_limit=3000) == (head, rest)


_MARKDOWN = st.lists(
    st.sampled_from(
        ["word", " ", "**", "*", "_", "~~", "`code span`", "&", "<", ">", "[a](https://l.example)"]
    )
    | st.text(alphabet="abc &<>", max_size=5),
    max_size=40,
).map("".join)


@given(_MARKDOWN, st.integers(min_value=8, max_value=80))
def test_a_cut_fits_its_limits_and_leaves_no_code_open(markdown: str, limit: int) -> None:
    full = to_mrkdwn(markdown)
    head = clip_mrkdwn(markdown, limit, json_limit=limit * 2)
    if head == full:
        return
    assert width(head) <= limit and json_len(head) <= limit * 2
    assert head.endswith("…") and head.count("`") % 2 == 0, head
