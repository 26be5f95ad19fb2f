"""Secrets never leave in a probe's result: known shapes, exact values, and an echoing server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import ProbeContext, run_probe
from bot.ops.redact import MASK, redact
from tests.test_probes_network import http_server

BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("Authorization: Bearer abc.def.ghi-123", "abc.def.ghi-123", "Authorization: "),
        ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "authorization="),
        ("  Proxy-Authorization: Digest username=x", "username=x", "Proxy-Authorization: "),
        (f"token is {BOT_TOKEN}.", BOT_TOKEN, "token is "),
        ("xapp-1-A0123456789-1234567890-abcdef0123456789", "xapp-1-A0123456789", ""),
        (
            "curl -H 'X-Auth: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig'",
            "eyJhbGciOiJIUzI1NiJ9",
            "Bearer ",
        ),
        ("aws_access_key_id AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE", "used"),
        ("ASIAY34FZKBOKMUTVV7A temporary", "ASIAY34FZKBOKMUTVV7A", "temporary"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "wJalrXUtnFEMI", "access_key="),
        ("connect password=hunter2 sslmode=require", "hunter2", "sslmode=require"),
        ("DB_PASSWORD: 's3cr3t value'", "s3cr3t", "DB_PASSWORD: "),
        ("postgresql://deployer:pg-pass-1@db.internal:5432/app", "pg-pass-1", "@db.internal:5432"),
        ("redis://:redis-pass-2@cache:6379", "redis-pass-2", "redis://"),
        ('{"token": "tok-123456", "ok": true}', "tok-123456", '"ok": true'),
        ('{"api_key":"k-98765"}', "k-98765", '"api_key":'),
        ("client_secret=abc123&grant_type=client_credentials", "abc123", "grant_type="),
    ],
)
def test_known_shapes_are_masked(text: str, secret: str, kept: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert MASK in redacted
    assert kept in redacted  # what names the secret stays, so the reader knows what was there


def test_harmless_text_is_untouched() -> None:
    text = "HTTP 200 in 34 ms; 3 A records; exit 0; token bucket has 5 left"
    assert redact(text) == text


def test_exact_secret_values_are_masked_wherever_they_appear() -> None:
    text = "connected as svc with key Zq9-plain-looking and again Zq9-plain-looking."
    assert redact(text, secrets=["Zq9-plain-looking"]) == (
        f"connected as svc with key {MASK} and again {MASK}."
    )


def test_short_values_are_not_treated_as_secrets() -> None:
    # A 1-3 character "secret" would mask every occurrence of common text.
    assert redact("exit 0 in 12 ms", secrets=["0", "12", ""]) == "exit 0 in 12 ms"


_printable = st.text(st.characters(codec="utf-8"), max_size=60)


@given(
    before=_printable,
    after=_printable,
    secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=40),
)
def test_an_exact_secret_never_survives(before: str, after: str, secret: str) -> None:
    if secret in MASK:
        return  # the mask itself would "contain" it
    assert secret not in redact(before + secret + after, secrets=[secret])


def test_http_probe_detail_masks_an_echoed_authorization_header() -> None:
    token = "Bearer dpl-7f3a9c2e41b8d6f0"
    spec = HttpProbe(
        url="http://127.0.0.1/echo",  # replaced below once the server has its port
        headers_from_env={"Authorization": "API_TOKEN", "X-Request-Source": "SOURCE"},
        body_contains="dpl-7f3a9c2e41b8d6f0",
    )
    with http_server() as web:
        spec = spec.model_copy(update={"url": f"{web}/echo"})
        ctx = ProbeContext(environ={"API_TOKEN": token, "SOURCE": "deploybot-cli"})
        result = run_probe("echo", spec, ctx=ctx)
    # The server echoed the header back: the check saw it (body_contains passed) ...
    assert result.ok, result.summary
    # ... but what is stored and posted shows the mask, never the token.
    assert '"Authorization": "[REDACTED]"' in result.detail
    assert "dpl-7f3a9c2e41b8d6f0" not in result.detail + result.summary
    assert token in ctx.secrets
