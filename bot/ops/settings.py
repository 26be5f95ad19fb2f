"""Process settings from the environment. Secrets live here, never in the YAML config."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field("sqlite:///deploybot.db", alias="DATABASE_URL")
    config_path: str = Field("deploybot.yaml", alias="DEPLOYBOT_CONFIG")
    slack_bot_token: str = Field("", alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str = Field("", alias="SLACK_SIGNING_SECRET")
    slack_app_token: str = Field("", alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(None, alias="SLACK_API_URL")
    port: int = Field(3000, alias="PORT")
    # How often a replica tries for the scheduler leader lock, and how often the leader
    # re-arms every open session's schedule as a safety net (seconds; it also does so when
    # it becomes the leader). Schedules are outbox rows armed with the change that calls
    # for them: no poll of the sessions keeps them.
    scheduler_poll: float = Field(2.0, alias="DEPLOYBOT_SCHEDULER_POLL")
    scheduler_sync: float = Field(3600.0, alias="DEPLOYBOT_SCHEDULER_SYNC")
    # How often the outbox workers look for effects other replicas wrote (their own they
    # deliver at once), and the inbox for requests a stopped replica left unfinished.
    outbox_poll: float = Field(2.0, alias="DEPLOYBOT_OUTBOX_POLL")
    # Backoff between failed attempts of an effect: the first wait, and the longest. Kept
    # short so that Slack and PagerDuty catch up within seconds of an outage's end.
    outbox_backoff: float = Field(1.0, alias="DEPLOYBOT_OUTBOX_BACKOFF")
    outbox_backoff_cap: float = Field(15.0, alias="DEPLOYBOT_OUTBOX_BACKOFF_CAP")
    # Pages have a worker and a cap of their own (seconds, whatever the cap above): after a
    # PagerDuty outage the first page goes out within seconds of its recovery.
    pagerduty_backoff_cap: float = Field(5.0, alias="DEPLOYBOT_PAGERDUTY_BACKOFF_CAP")
    # How long a trigger waits for its incident message to be posted, to link to its thread
    # (seconds from the failure); then it pages without the link, so Slack never holds it.
    pagerduty_link_wait: float = Field(10.0, alias="DEPLOYBOT_PAGERDUTY_LINK_WAIT")
    # On SIGTERM (or Ctrl-C), how long `serve` may take to finish or hand back its in-flight
    # work before it exits; keep it under the pod's terminationGracePeriodSeconds (30 s).
    drain_timeout: float = Field(20.0, alias="DEPLOYBOT_DRAIN_TIMEOUT")
    # How long a replica keeps an effect or a Slack request it took before another replica
    # may take it over (it renews effects while it works on them): what a crash delays.
    outbox_lease: float = Field(15.0, alias="DEPLOYBOT_OUTBOX_LEASE")
    # How often a deploy step that waits (a rollout, a pause) is looked at again (seconds).
    deploy_poll: float = Field(2.0, alias="DEPLOYBOT_DEPLOY_POLL")
    inbox_claim: float = Field(30.0, alias="DEPLOYBOT_INBOX_CLAIM")
    # How often the inbox's workers look for Slack requests that a web-only process recorded
    # (or that a stopped process left unfinished); their own web tier's they take at once.
    inbox_poll: float = Field(0.2, alias="DEPLOYBOT_INBOX_POLL")
    # How many Slack requests' listeners a working process runs at once.
    worker_threads: int = Field(16, alias="DEPLOYBOT_WORKER_THREADS", ge=1)
    # A probe round runs all its checks at once, up to this many (and to what the open-file
    # limit leaves room for), with at most ``probe_per_host`` talking to one host:port.
    probe_concurrency: int = Field(256, ge=1, alias="DEPLOYBOT_PROBE_CONCURRENCY")
    probe_per_host: int = Field(16, ge=1, alias="DEPLOYBOT_PROBE_PER_HOST")
    host: str = Field("0.0.0.0", alias="DEPLOYBOT_HOST")  # HTTP mode's listening address
    # The installation's name for the scheduler's leader lock. Unset, the database and schema
    # name it, so installations sharing a PostgreSQL server each get their own leader.
    installation: str | None = Field(None, alias="DEPLOYBOT_INSTALLATION")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
