"""Secrets never leave in a probe's result: known shapes, exact values, and an echoing server."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import ProbeContext, run_probe
from bot.ops.redact import MASK, redact, step_environment
from bot.ops.secret_shapes import OWN_SHAPES, backtracking_budget, detector_patterns, looks_random
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


# Issue 10: the forms the old redactor let through (13 of 26 fully masked, 2 partly).

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Kf3Tb1x"
# (what, text, the parts of it that must not survive): made-up values, real shapes.
FORMS = [
    pytest.param(f"default {AWS_SECRET} shared", [AWS_SECRET], id="bare AWS secret key"),
    pytest.param(
        "aws_access_key_id AKIAQ3EGRW5NT4LDK2XF used", ["AKIAQ3EGRW5NT4LDK2XF"], id="AWS key id"
    ),
    pytest.param(f"aws_secret_access_key = {AWS_SECRET}", [AWS_SECRET], id="aws credentials file"),
    pytest.param(
        "cloning with ghp_R8kzQ2mVx7LpA9sWc4TnB6yHd1uJe3fG5oIq ok",
        ["R8kzQ2mVx7LpA9sWc4TnB6yHd1uJe3fG5oIq"],
        id="ghp",
    ),
    pytest.param(
        "token gho_16C7e42F292c6912E7710c838347Ae178B4a",
        ["16C7e42F292c6912E7710c838347Ae178B4a"],
        id="gho",
    ),
    pytest.param(
        "ghu_Xy9Zk2Lm4Np6Qr8St0Uv1Wx3Yz5Ab7Cd9EfGh",
        ["Xy9Zk2Lm4Np6Qr8St0Uv1Wx3Yz5Ab7Cd9EfGh"],
        id="ghu",
    ),
    pytest.param(
        "GITHUB_TOKEN is ghs_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
        ["aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"],
        id="ghs",
    ),
    pytest.param(
        "refresh ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c3",
        ["1B4a2e77838347a7E420ce178F2E7c6912E169246c3"],
        id="ghr",
    ),
    pytest.param(
        "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789abcdefghijKLMNOPQRSTUVWXyz0123456",
        ["11ABCDEFG0aBcDeFgHiJkL", "mNoPqRsTuVwXyZ0123456789abcdefghijKLMNOPQRSTUVWXyz0123456"],
        id="github_pat",
    ),
    pytest.param(
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2\nq9sKc8Vb1wXyZ+/abcDEF==\n-----END RSA PRIVATE KEY-----\ndone",  # noqa: E501 (one shape, one line)
        ["MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2", "q9sKc8Vb1wXyZ+/abcDEF=="],
        id="PEM RSA",
    ),
    pytest.param(
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nBKcwggSjAgEAAoIBAQC7\\n-----END PRIVATE KEY-----\\n", "project_id": "demo"}',  # noqa: E501 (one shape, one line)
        ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "BKcwggSjAgEAAoIBAQC7"],
        id="PEM in JSON",
    ),
    pytest.param(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----",  # noqa: E501 (one shape, one line)
        ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"],
        id="OpenSSH key",
    ),
    pytest.param(
        "> Cookie: session=8f2a9c1e77; csrftoken=Qm9vbGVhbg",
        ["8f2a9c1e77", "Qm9vbGVhbg"],
        id="Cookie",
    ),
    pytest.param(
        "< Set-Cookie: sid=s%3AJ7kP2qLx.9vWnZ; Path=/; HttpOnly; Secure",
        ["J7kP2qLx", "9vWnZ"],
        id="Set-Cookie",
    ),
    pytest.param(
        "GET https://bucket.s3.amazonaws.com/k.tar?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAQ3EGRW5NT4LDK2XF%2F20261123%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7 200",  # noqa: E501 (one shape, one line)
        [
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
            "AKIAQ3EGRW5NT4LDK2XF",
        ],
        id="X-Amz-Signature",
    ),
    pytest.param(
        "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-12-01T00:00:00Z&sig=Wq3%2BfG7hK9LmN0pQ%2FrS2tU4vW6xY8zA%3D done",  # noqa: E501 (one shape, one line)
        ["Wq3%2BfG7hK9LmN0pQ%2FrS2tU4vW6xY8zA%3D"],
        id="Azure SAS",
    ),
    pytest.param(
        "id eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJkZXBsb3lib3QifQ.c2lnbmF0dXJlLXZhbHVlLWhlcmU end",  # noqa: E501 (one shape, one line)
        [
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ",
            "eyJzdWIiOiJkZXBsb3lib3QifQ",
            "c2lnbmF0dXJlLXZhbHVlLWhlcmU",
        ],
        id="JWT bare",
    ),
    pytest.param(
        "ssh-keygen passphrase=correct-horse-battery", ["correct-horse-battery"], id="passphrase"
    ),
    pytest.param("gpg:\n  passphrase: 'tr0ub4dor &3'", ["tr0ub4dor &3"], id="passphrase yaml"),
    pytest.param(
        "charging with sk_live_51HxQ2mKzL8pA9sWc4TnB6yHd",
        ["51HxQ2mKzL8pA9sWc4TnB6yHd"],
        id="Stripe",
    ),
    pytest.param(
        "https://deploy:pa/ss/w0rd@git.internal/org/repo.git",
        ["pa/ss/w0rd"],
        id="URL password with /",
    ),
    pytest.param(
        "postgresql://app:p@ss@w0rd!@db.internal:5432/app?sslmode=require",
        ["p@ss@w0rd!"],
        id="URL password with @",
    ),
    pytest.param(
        '{"user": "svc", "password": "hun\\"ter2\\"x", "ok": true}',
        ['hun\\"ter2', 'ter2\\"x'],
        id="JSON escaped quote",
    ),
    pytest.param('"body": "{\\"password\\": \\"s3cr3t-Pw\\"}"', ["s3cr3t-Pw"], id="JSON in JSON"),
    pytest.param(
        "posting as xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
        ["AbCdEfGhIjKlMnOpQrStUvWx"],
        id="Slack",
    ),
    pytest.param(
        "Authorization: Bearer dpl.7f3a9c2e41b8d6f0", ["dpl.7f3a9c2e41b8d6f0"], id="Bearer"
    ),
    pytest.param("glpat-Xk2mQ9vL7pR4sT1wY6zB", ["Xk2mQ9vL7pR4sT1wY6zB"], id="GitLab"),
    pytest.param(
        "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",
        ["ngeVfQFYQlKU0ufo8x5d1A", "TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr"],
        id="SendGrid",
    ),
    pytest.param(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
        + "Zm9vYmFyYmF6cXV4" * 5
        + "Zm9vYmFyYmF6cQ==;EndpointSuffix=core.windows.net",
        ["Zm9vYmFyYmF6cXV4Zm9vYmFy"],
        id="Azure AccountKey",
    ),
    pytest.param(
        "//registry.npmjs.org/:_authToken=npm_Ab3De5Fg7Hi9Jk1Lm3No5Pq7Rs9Tu1Vw3Xy5",
        ["npm_Ab3De5Fg7Hi9Jk1Lm3No5Pq7Rs9Tu1Vw3Xy5"],
        id="npm",
    ),
    pytest.param(
        "DATABASE_URL=postgres://svc:Zq9-plain@db:5432/x REDIS_PASSWORD=r3d1s",
        ["Zq9-plain", "r3d1s"],
        id="env dump",
    ),
]


@pytest.mark.parametrize(("text", "secrets"), FORMS)
def test_every_known_form_is_fully_masked(text: str, secrets: list[str]) -> None:
    redacted = redact(text)
    for secret in secrets:
        assert secret not in redacted, redacted
    assert MASK in redacted


def test_at_least_26_forms_are_covered() -> None:
    assert len(FORMS) >= 26


# What people need to read in probe output: URLs, JSON, kubectl, SHAs, UUIDs, image tags.
HARMLESS = [
    "HTTP 200 in 34 ms from https://api.example.com/v1/health?verbose=true#top",
    '{"status": "ok", "version": "1.4.2", "uptime_seconds": 86400, "checks": {"db": "up", "cache": "up"}}',  # noqa: E501 (one shape, one line)
    'deployment "api" successfully rolled out',
    "NAME                          READY   STATUS    RESTARTS   AGE\napi-deployment-7d9f8c6b5-x2k4p   1/1     Running   0          3d4h",  # noqa: E501 (one shape, one line)
    "commit 3f9a2c1e8b7d6054a1b2c3d4e5f60718293a4b5c",
    "short sha 3f9a2c1",
    "request id 123e4567-e89b-12d3-a456-426614174000",
    "image registry.example.com/team/api:v1.4.2-rc.1@sha256:9b2f6c1e3a4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f",  # noqa: E501 (one shape, one line)
    "ghcr.io/OrgName/ServiceName:2024.11.23-3f9a2c1",
    'Waiting for deployment "api" rollout to finish: 2 of 3 updated replicas are available...',
    "arn:aws:lambda:eu-west-1:123456789012:function:checkout-api:live",
    "arn:aws:ecs:eu-west-1:123456789012:task-definition/CheckoutServiceTaskDefinition:42",
    "alarm CheckoutApiHighErrorRateAlarm in ALARM since 2026-11-23T12:00:00Z",
    "/var/lib/kubelet/pods/0b1c2d3e/volumes/kubernetes.io~projected/kube-api-access-x2k4p",
    "Resolved api.example.com to 203.0.113.7, 203.0.113.8 (TTL 300)",
    "certificate expires 2027-01-01T00:00:00Z (CN=api.example.com, issuer=R3)",
    "exit 0 in 12 ms; token bucket has 5 left",
    "SELECT 1 returned 1 row in 2 ms",
    "sqs queue checkout-dlq has 0 messages",
    "s3://deploy-artifacts/CheckoutService/releases/2024-11-23/CheckoutService-1.4.2.tar.gz",
    "https://github.com/ExampleOrg/CheckoutService/actions/runs/11987654321/job/33456789012",
    'etag "5d41402abc4b2a76b9719d911017c592"',
    "digest: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 size: 1573",
    "revision 17 (pod-template-hash=7d9f8c6b5), observedGeneration 42",
    "com.example.checkout.service.PaymentAuthorizationHandlerImplementation2 started",
    "kubectl rollout undo deployment/api -n prod --to-revision=16",
    "user@example.com signed off as DevOps Lead",
    "ssh deploy@bastion.example.com -p 2222",
    "https://api.example.com:8443/login?next=/x@y",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_probe_output_is_not_mangled(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "token",
    [
        "3f9a2c1e8b7d6054a1b2c3d4e5f60718293a4b5c",  # git SHA: hex, no upper case
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # image digest
        "123e4567-e89b-12d3-a456-426614174000",
        "CheckoutServiceTaskDefinitionRevision2024",  # words: low entropy
        "ExampleOrg/CheckoutService/actions/runs/11987654321",  # path segments
    ],
)
def test_entropy_leaves_identifiers_people_read(token: str) -> None:
    assert not looks_random(token)


def test_entropy_catches_a_bare_key() -> None:
    assert looks_random("wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Kf3Tb1x")
    assert looks_random("Q2hlY2tvdXRTZXJ2aWNlOmRwbC03ZjNhOWMyZTQxYjhkNmYw")


_KEY = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
    min_size=36,
    max_size=36,
)
_AROUND = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=40)


@given(
    before=_AROUND,
    after=_AROUND,
    prefix=st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
    key=_KEY,
    sep=st.sampled_from([" ", "\n", "\t", "'", '"', "(", ",", "="]),
)
def test_a_github_token_never_survives_whatever_surrounds_it(
    before: str, after: str, prefix: str, key: str, sep: str
) -> None:
    assume(key not in before + after)
    assert key not in redact(f"{before}{sep}{prefix}{key}{sep}{after}")


@given(
    user=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
    password=st.text(st.sampled_from("abcXYZ0123456789/@!%*-_.~"), min_size=6, max_size=30).filter(
        lambda p: not p[0].isdigit() and p.count("@") < 3
    ),
    host=st.from_regex(r"[a-z]{2,10}\.internal", fullmatch=True),
)
@example(user="u", password="//0000", host="db.internal")  # split as if "u://" began a URL
@example(user="u", password="///ab@c", host="db.internal")
def test_a_url_password_never_survives(user: str, password: str, host: str) -> None:
    redacted = redact(f"connecting to postgresql://{user}:{password}@{host}:5432/app now")
    assert f":{password}@" not in redacted
    assert f"@{host}:5432/app now" in redacted


# Linear time: every pattern is built so; benchmarks/redact.py shows it (no timed test here).


def _unbounded_outside_atomic(pattern: re.Pattern[str]) -> list[str]:
    """Repeats with no upper bound that are neither possessive nor inside an atomic group."""
    import re._constants as c  # type: ignore[import-not-found]
    import re._parser as parser  # type: ignore[import-not-found]

    found: list[str] = []

    def walk(items: object, atomic: bool) -> None:
        for op, av in items:  # type: ignore[attr-defined]
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                if av[1] == c.MAXREPEAT and not atomic:
                    found.append(str(op))
                walk(av[2], atomic)
            elif op is c.POSSESSIVE_REPEAT:
                walk(av[2], atomic)
            elif op is c.SUBPATTERN:
                walk(av[3], atomic)
            elif op is c.BRANCH:
                for branch in av[1]:
                    walk(branch, atomic)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                walk(av[1], atomic)
            elif op is c.ATOMIC_GROUP:
                walk(av, True)

    walk(parser.parse(pattern.pattern, pattern.flags), False)
    return found


@pytest.mark.parametrize(("name", "pattern"), [(n, p) for n, p, _ in OWN_SHAPES])
def test_our_patterns_never_give_back_an_unbounded_run(name: str, pattern: re.Pattern[str]) -> None:
    assert _unbounded_outside_atomic(pattern) == [], name


def test_detect_secrets_patterns_are_adopted_only_when_their_backtracking_is_bounded() -> None:
    adopted = {name for name, _, ok in detector_patterns() if ok}
    rejected = {name for name, _, ok in detector_patterns() if not ok}
    assert {
        "GitHubTokenDetector",
        "StripeDetector",
        "AWSKeyDetector",
        "GitLabTokenDetector",
        "AzureStorageKeyDetector",
        "SendGridDetector",
        "TwilioKeyDetector",
    } <= adopted
    # Unbounded backtracking; our own patterns cover what they find.
    assert {"JwtTokenDetector", "BasicAuthDetector", "SlackDetector", "NpmDetector"} <= rejected
    for _, pattern, ok in detector_patterns():
        assert ok == (backtracking_budget(pattern) <= 5000)


@pytest.mark.parametrize(
    "unit",
    [
        "x",
        "password",
        "eyJ",
        "://a:b",
        "-----BEGIN PRIVATE KEY-----",
        "Ab3+/9zQ",
        '"password\\"',
        "glpat-",
        "xoxb-1-",
    ],
)
def test_adversarial_input_of_200_kb_is_redacted_correctly(unit: str) -> None:
    # Behaviour only: the old redactor took minutes here; time is measured by the benchmark.
    text = unit * (200_000 // len(unit)) + " password=hunter2 ghp_" + "A1b2" * 9
    redacted = redact(text)
    assert "hunter2" not in redacted and "A1b2" * 9 not in redacted


def test_a_step_environment_holds_only_the_named_variables_and_masks_their_values() -> None:
    env = step_environment(
        ["ROLLBACK_TOKEN", "MISSING"], {"ROLLBACK_TOKEN": "rb-9f2c", "HOME": "/root"}
    )
    assert env == {"ROLLBACK_TOKEN": "rb-9f2c"}
    assert env.redact("token is rb-9f2c; home /root") == f"token is {MASK}; home /root"
