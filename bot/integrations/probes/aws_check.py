"""AWS probes: CloudWatch alarms, SQS depth, DynamoDB PITR, SES identity, Lambda invoke.

Credentials, region and endpoint come from the standard AWS sources (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, instance
roles ...), read by boto3 itself; a probe's ``region`` overrides the region. Every call is
bounded by the probe's timeout, and every AWS error becomes a failed outcome that says what
was wrong (unknown table, access denied, no credentials, endpoint unreachable).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from bot.config.probe_specs import AwsProbe, CloudWatchMetricProbe
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

ATTEMPTS = 2  # one retry for a transient error; both fit in the probe's timeout
EXCERPT_LIMIT = 80
LISTED_ALARMS = 5

_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "TableNotFoundException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "NotFoundException",
    }
)
_REFUSED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)


def check(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Run the AWS check that ``spec.check`` names.

    Args:
        spec: The probe as configured.
        ctx: The environment the probe reads (``AWS_REGION`` when ``spec.region`` is unset).

    Returns:
        The outcome; AWS errors, missing credentials and unreachable endpoints are failed
        outcomes with a summary that says which, never exceptions.

    Raises:
        ProbeConfigError: The probe cannot run as configured (a payload that is not JSON).
    """
    run = _CHECKS[spec.check]
    seconds = spec.timeout.total_seconds()
    try:
        return run(spec, ctx)
    except NoCredentialsError:
        return ProbeOutcome(
            False,
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
            "AWS_PROFILE, or run with an instance or task role",
        )
    except PartialCredentialsError as error:
        return ProbeOutcome(False, f"incomplete AWS credentials: {error}")
    except NoRegionError:
        return ProbeOutcome(
            False, "no AWS region: set 'region' on the probe, or AWS_REGION / AWS_DEFAULT_REGION"
        )
    except (ConnectTimeoutError, ReadTimeoutError) as error:
        return ProbeOutcome(
            False, f"{_target(spec)}: AWS did not answer within {seconds:g}s", str(error)
        )
    except EndpointConnectionError as error:
        return ProbeOutcome(False, f"{_target(spec)}: AWS endpoint unreachable", str(error))
    except ClientError as error:
        return _client_error(spec, error)


def _client(
    service: str,
    spec: AwsProbe | CloudWatchMetricProbe,
    ctx: ProbeContext,
    *,
    attempts: int = ATTEMPTS,
) -> Any:
    """A client whose attempts together fit in the probe's timeout.

    ``total_max_attempts`` counts the first try (botocore's ``max_attempts`` counts only the
    retries), so each attempt gets an equal share of the timeout.
    """
    share = max(spec.timeout.total_seconds() / attempts, 0.1)
    config = Config(
        connect_timeout=share,
        read_timeout=share,
        retries={"total_max_attempts": attempts, "mode": "standard"},
    )
    # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is the other standard name.
    region = spec.region or ctx.environ.get("AWS_REGION") or None
    return boto3.session.Session(region_name=region).client(service, config=config)


def _cloudwatch_alarms(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    prefix = spec.alarm_prefix or ""
    pages = _client("cloudwatch", spec, ctx).get_paginator("describe_alarms")
    checked: list[str] = []
    firing: list[str] = []
    for page in pages.paginate(
        AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        for alarm in [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]:
            checked.append(alarm["AlarmName"])
            if alarm.get("StateValue") == "ALARM":
                firing.append(alarm["AlarmName"])
    if firing:
        names = ", ".join(firing[:LISTED_ALARMS])
        more = f" and {len(firing) - LISTED_ALARMS} more" if len(firing) > LISTED_ALARMS else ""
        return ProbeOutcome(
            False,
            f"{_count(len(firing), 'alarm')} in ALARM: {names}{more}",
            "\n".join(firing),
        )
    if not checked:
        # A prefix that matches nothing guards nothing: most likely a typo in the config.
        return ProbeOutcome(False, f"no alarm is named '{prefix}*': check alarm_prefix")
    return ProbeOutcome(True, f"no alarm in ALARM ({len(checked)} checked)")


def _sqs_depth(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    sqs = _client("sqs", spec, ctx)
    url = spec.queue_url or sqs.get_queue_url(QueueName=spec.queue_name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    waiting = int(attributes.get("ApproximateNumberOfMessages", 0))
    in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
    depth = waiting + in_flight
    summary = (
        f"{_target(spec)}: {_count(depth, 'message')} "
        f"({waiting} waiting, {in_flight} in flight), max {spec.max_depth}"
    )
    return ProbeOutcome(depth <= spec.max_depth, summary)


def _dynamodb_pitr(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    described = _client("dynamodb", spec, ctx).describe_continuous_backups(TableName=spec.table)
    pitr = described["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    status = pitr.get("PointInTimeRecoveryStatus", "unknown")
    return ProbeOutcome(
        status == "ENABLED", f"{_target(spec)}: point-in-time recovery {status.lower()}"
    )


def _ses_identity(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    identity = spec.identity or ""
    answer = _client("ses", spec, ctx).get_identity_verification_attributes(Identities=[identity])
    attributes = answer.get("VerificationAttributes", {}).get(identity)
    if attributes is None:
        return ProbeOutcome(False, f"{_target(spec)}: not found in SES (never added or deleted)")
    status = attributes.get("VerificationStatus", "unknown")
    return ProbeOutcome(status == "Success", f"{_target(spec)}: verification {status}")


def _lambda_invoke(spec: AwsProbe, ctx: ProbeContext) -> ProbeOutcome:
    try:
        json.loads(spec.payload)
    except ValueError as error:
        raise ProbeConfigError(f"payload is not JSON: {error}") from None
    # One attempt only: a retried invoke would run the function twice.
    answer = _client("lambda", spec, ctx, attempts=1).invoke(
        FunctionName=spec.function, Payload=spec.payload.encode()
    )
    status = answer.get("StatusCode")
    body = answer["Payload"].read().decode("utf-8", "replace") if "Payload" in answer else ""
    excerpt = _excerpt(body)
    failure = answer.get("FunctionError")
    if failure:
        return ProbeOutcome(
            False, f"{_target(spec)}: function error ({failure}), status {status}: {excerpt}", body
        )
    ok = status == 200
    verdict = "ran" if ok else "unexpected status"
    return ProbeOutcome(ok, f"{_target(spec)}: {verdict}, status {status}: {excerpt}", body)


_CHECKS: dict[str, Callable[[AwsProbe, ProbeContext], ProbeOutcome]] = {
    "cloudwatch_alarms": _cloudwatch_alarms,
    "sqs_depth": _sqs_depth,
    "dynamodb_pitr": _dynamodb_pitr,
    "ses_identity": _ses_identity,
    "lambda_invoke": _lambda_invoke,
}


def _client_error(spec: AwsProbe, error: ClientError) -> ProbeOutcome:
    details = error.response.get("Error", {})
    # SQS's JSON protocol puts the readable code (QueueDoesNotExist) in QueryErrorCode.
    code = str(details.get("QueryErrorCode") or details.get("Code", "Unknown"))
    message = str(details.get("Message", "")).strip()
    operation = error.operation_name
    if code in _NOT_FOUND:
        summary = f"{_target(spec)} not found ({code})"
    elif code in _REFUSED:
        summary = f"{_target(spec)}: AWS refused {operation} ({code}): {message}"
    else:
        summary = f"{_target(spec)}: {operation} failed ({code}): {message}"
    return ProbeOutcome(False, summary, str(error))


def _target(spec: AwsProbe) -> str:
    """What the check looks at, in words: ``table 'orders'``, ``queue 'orders-dlq'``."""
    targets = {
        "cloudwatch_alarms": f"alarms '{spec.alarm_prefix}*'",
        "sqs_depth": f"queue '{spec.queue_name or spec.queue_url}'",
        "dynamodb_pitr": f"table '{spec.table}'",
        "ses_identity": f"identity '{spec.identity}'",
        "lambda_invoke": f"function '{spec.function}'",
    }
    return targets[spec.check]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "(empty payload)"
    return flat if len(flat) <= EXCERPT_LIMIT else flat[: EXCERPT_LIMIT - 1] + "…"
