"""AWS probes through the real runner, against moto's threaded server on loopback.

moto's server runs in this process, so its configuration (``/moto-api/config``) and the
variables it reads (``DOCKER_HOST``) are this process's: each test sets what it needs and
puts it back.

Lambda: with ``{"lambda": {"use_docker": False}}`` moto answers invokes from
``LambdaSimpleBackend``, which echoes the payload (or a queued result) and never fails;
it does not even look the function up. With Docker (moto's default) and no Docker daemon,
moto reports the invocation as a function error (``FunctionError: Handled``) and an unknown
function as ``ResourceNotFoundException``. The tests use both.
"""

from __future__ import annotations

import io
import socket
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from bot.config.probe_specs import AwsProbe
from bot.integrations.probes import ProbeResult, run_probe
from tests.support.moto import use_moto

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@pytest.fixture(autouse=True)
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials and a region, nothing from ~/.aws, AWS_ENDPOINT_URL at moto."""
    use_moto(monkeypatch, moto_endpoint, tmp_path)
    return moto_endpoint


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the accepting thread notices the end of the test
    held: list[socket.socket] = []
    done = threading.Event()

    def hold() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
        for connection in held:
            connection.close()


@pytest.fixture
def refused_endpoint() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def aws(service: str) -> Any:
    """A client for setting up the scene (endpoint and credentials from the environment)."""
    return boto3.client(service, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def probe(check: str, **fields: Any) -> ProbeResult:
    """Run one AWS probe through the runner, as the bot does."""
    return run_probe(f"aws-{check}", AwsProbe(check=check, **fields))


# One valid spec per check, for the tests that do not care about the target.
ANY_TARGET: dict[str, dict[str, Any]] = {
    "cloudwatch_alarms": {"alarm_prefix": "api-"},
    "sqs_depth": {"queue_name": "orders-dlq"},
    "dynamodb_pitr": {"table": "orders"},
    "ses_identity": {"identity": "example.com"},
    "lambda_invoke": {"function": "checkout"},
}


# --- CloudWatch alarms ---------------------------------------------------------------------


def put_alarms(prefix: str, *names: str) -> None:
    cloudwatch = aws("cloudwatch")
    for name in names:
        cloudwatch.put_metric_alarm(
            AlarmName=f"{prefix}{name}",
            MetricName="Errors",
            Namespace="deploybot/test",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=f"{prefix}{name}", StateValue="OK", StateReason="t")


def test_cloudwatch_passes_when_no_alarm_fires() -> None:
    prefix = unique("api") + "-"
    put_alarms(prefix, "5xx", "latency", "throttles", "queue-age", "cpu")
    put_alarms(unique("other") + "-", "firing")

    result = probe("cloudwatch_alarms", alarm_prefix=prefix)

    assert result.ok, result.summary
    assert result.summary == "no alarm in ALARM (5 checked)"


def test_cloudwatch_fails_naming_the_alarms_in_alarm() -> None:
    prefix = unique("api") + "-"
    put_alarms(prefix, "5xx", "latency", "cpu")
    for name in ("5xx", "latency"):
        aws("cloudwatch").set_alarm_state(
            AlarmName=f"{prefix}{name}", StateValue="ALARM", StateReason="threshold crossed"
        )

    result = probe("cloudwatch_alarms", alarm_prefix=prefix)

    assert not result.ok
    assert result.summary == f"2 alarms in ALARM: {prefix}5xx, {prefix}latency"


def test_cloudwatch_fails_when_the_prefix_matches_no_alarm() -> None:
    prefix = unique("typo") + "-"

    result = probe("cloudwatch_alarms", alarm_prefix=prefix)

    assert not result.ok
    assert result.summary == f"no alarm is named '{prefix}*': check alarm_prefix"


# --- SQS depth -----------------------------------------------------------------------------


def queue_with(messages: int) -> tuple[str, str]:
    name = unique("orders-dlq")
    sqs = aws("sqs")
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    for n in range(messages):
        sqs.send_message(QueueUrl=url, MessageBody=f"failed order {n}")
    return name, url


def test_sqs_passes_on_an_empty_queue_by_name() -> None:
    name, _ = queue_with(0)

    result = probe("sqs_depth", queue_name=name)

    assert result.ok, result.summary
    assert result.summary == f"queue '{name}': 0 messages (0 waiting, 0 in flight), max 0"


def test_sqs_fails_on_three_messages_in_a_dead_letter_queue() -> None:
    name, _ = queue_with(3)

    result = probe("sqs_depth", queue_name=name, max_depth=0)

    assert not result.ok
    assert result.summary == f"queue '{name}': 3 messages (3 waiting, 0 in flight), max 0"


def test_sqs_counts_messages_in_flight_and_reads_the_queue_by_url() -> None:
    _, url = queue_with(3)
    aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=300)

    at_limit = probe("sqs_depth", queue_url=url, max_depth=3)
    over = probe("sqs_depth", queue_url=url, max_depth=2)

    assert at_limit.ok, at_limit.summary
    assert "3 messages (2 waiting, 1 in flight), max 3" in at_limit.summary
    assert not over.ok


def test_sqs_unknown_queue_says_so() -> None:
    result = probe("sqs_depth", queue_name="no-such-queue")

    assert not result.ok
    assert result.summary == "queue 'no-such-queue' not found (QueueDoesNotExist)"


# --- DynamoDB point-in-time recovery -------------------------------------------------------


def table(*, pitr: bool) -> str:
    name = unique("orders")
    dynamodb = aws("dynamodb")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    if pitr:
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return name


def test_dynamodb_passes_with_pitr_enabled() -> None:
    name = table(pitr=True)

    result = probe("dynamodb_pitr", table=name)

    assert result.ok, result.summary
    assert result.summary == f"table '{name}': point-in-time recovery enabled"


def test_dynamodb_fails_with_pitr_disabled() -> None:
    name = table(pitr=False)

    result = probe("dynamodb_pitr", table=name)

    assert not result.ok
    assert result.summary == f"table '{name}': point-in-time recovery disabled"


def test_dynamodb_unknown_table_says_so() -> None:
    result = probe("dynamodb_pitr", table="no-such-table")

    assert not result.ok
    assert result.summary == "table 'no-such-table' not found (TableNotFoundException)"


def test_the_probe_region_overrides_the_environment() -> None:
    name = table(pitr=True)  # in us-east-1

    result = probe("dynamodb_pitr", table=name, region="eu-west-1")

    assert not result.ok
    assert result.summary == f"table '{name}' not found (TableNotFoundException)"


def test_aws_region_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    name = table(pitr=True)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", REGION)

    result = probe("dynamodb_pitr", table=name)

    assert result.ok, result.summary


# --- SES identity --------------------------------------------------------------------------


def test_ses_passes_for_verified_address_and_domain() -> None:
    address, domain = f"{unique('deploys')}@example.com", f"{unique('mail')}.example.org"
    aws("ses").verify_email_identity(EmailAddress=address)
    aws("ses").verify_domain_identity(Domain=domain)

    results = [probe("ses_identity", identity=address), probe("ses_identity", identity=domain)]

    assert [r.ok for r in results] == [True, True], [r.summary for r in results]
    assert results[0].summary == f"identity '{address}': verification Success"


def test_ses_fails_for_an_unverified_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto marks every identity verified the moment it is added (its SES v1 answer is
    # hard-coded "Success"), so the backend behind the in-process server is told to
    # answer "Pending" instead; the request and the XML answer still go over HTTP.
    from moto.ses.models import ses_backends

    domain = f"{unique('new')}.example.org"
    aws("ses").verify_domain_identity(Domain=domain)
    backend = ses_backends[ACCOUNT][REGION]
    monkeypatch.setattr(
        backend,
        "get_identity_verification_attributes",
        lambda identities=None: {
            i: {"VerificationStatus": "Pending", "VerificationToken": "t"} for i in identities or []
        },
    )

    result = probe("ses_identity", identity=domain)

    assert not result.ok
    assert result.summary == f"identity '{domain}': verification Pending"


def test_ses_missing_identity_says_so() -> None:
    result = probe("ses_identity", identity="nobody@example.net")

    assert not result.ok
    assert result.summary == (
        "identity 'nobody@example.net': not found in SES (never added or deleted)"
    )


# --- Lambda invoke -------------------------------------------------------------------------

RAISES = "def handler(event, context):\n    raise RuntimeError('checkout is broken')\n"


@pytest.fixture
def lambda_without_docker(aws_env: str) -> Iterator[str]:
    """moto answers Lambda invokes from its simple backend (no Docker) during the test."""
    httpx.post(f"{aws_env}/moto-api/config", json={"lambda": {"use_docker": False}})
    try:
        yield aws_env
    finally:
        httpx.post(f"{aws_env}/moto-api/config", json={"lambda": {"use_docker": True}})


@pytest.fixture
def no_docker_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto runs functions in Docker, and finds no daemon, wherever this test runs."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/deploybot-test/docker.sock")


def create_function(code: str = RAISES) -> str:
    name = unique("checkout")
    role = aws("iam").create_role(RoleName=unique("lambda-role"), AssumeRolePolicyDocument="{}")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("lambda_function.py", code)
    aws("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="lambda_function.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    return name


@pytest.mark.usefixtures("lambda_without_docker")
def test_lambda_passes_showing_status_and_payload() -> None:
    name = create_function("def handler(event, context):\n    return event\n")

    result = probe("lambda_invoke", function=name, payload='{"ping": "deploybot"}')

    assert result.ok, result.summary
    assert result.summary == f'function \'{name}\': ran, status 200: {{"ping": "deploybot"}}'


def test_lambda_payload_excerpt_is_short(lambda_without_docker: str) -> None:
    name = create_function()
    queued = {"results": ["x" * 500], "region": REGION, "account_id": ACCOUNT}
    answer = httpx.post(
        f"{lambda_without_docker}/moto-api/static/lambda-simple/response", json=queued
    )
    assert answer.status_code == 201

    result = probe("lambda_invoke", function=name)

    assert result.ok, result.summary
    assert result.summary.endswith(": " + "x" * 79 + "…")
    assert result.detail == "x" * 500


@pytest.mark.usefixtures("no_docker_daemon")
def test_lambda_function_error_fails() -> None:
    name = create_function(RAISES)

    result = probe("lambda_invoke", function=name)

    assert not result.ok
    assert result.summary.startswith(f"function '{name}': function error (Handled), status 200: ")
    assert "error running docker" in result.summary


@pytest.mark.usefixtures("no_docker_daemon")
def test_lambda_unknown_function_says_so() -> None:
    result = probe("lambda_invoke", function="no-such-function")

    assert not result.ok
    assert result.summary == "function 'no-such-function' not found (ResourceNotFoundException)"


def test_lambda_payload_must_be_json() -> None:
    result = probe("lambda_invoke", function="checkout", payload="{not json")

    assert not result.ok
    assert result.summary.startswith("not runnable: payload is not JSON")


# --- Every check: timeouts, unreachable endpoints, no credentials, no region --------------


@pytest.mark.parametrize("check", sorted(ANY_TARGET))
def test_a_silent_endpoint_times_out_within_the_timeout(
    check: str, hung_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first client of a service in a process parses its model (up to a second on a busy
    # machine): that is done here first, so that what is timed is the wait on the network.
    probe(check, **ANY_TARGET[check])
    monkeypatch.setenv("AWS_ENDPOINT_URL", hung_endpoint)

    result = probe(check, timeout="300ms", **ANY_TARGET[check])

    assert not result.ok
    # The check's own timeout answered (the runner's cut-off would say otherwise); how long
    # it took is a benchmark's business, not a test's, on a shared machine.
    assert "AWS did not answer within 0.3s" in result.summary


@pytest.mark.parametrize("check", sorted(ANY_TARGET))
def test_an_unreachable_endpoint_says_so(
    check: str, refused_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe(check, **ANY_TARGET[check])  # parse the service's model before timing (see above)
    monkeypatch.setenv("AWS_ENDPOINT_URL", refused_endpoint)

    result = probe(check, timeout="1s", **ANY_TARGET[check])

    assert not result.ok
    assert result.summary.endswith(": AWS endpoint unreachable")
    assert refused_endpoint in result.detail


@pytest.mark.parametrize("check", sorted(ANY_TARGET))
def test_no_credentials_says_so(check: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = probe(check, **ANY_TARGET[check])

    assert not result.ok
    assert result.summary.startswith("no AWS credentials found")


def test_no_region_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    result = probe("dynamodb_pitr", table="orders")

    assert not result.ok
    assert result.summary.startswith("no AWS region")
