"""``deploybot sandbox``: start the bot and everything it talks to on loopback, stop it all.

The bot is the real one (``create_bot`` and ``serve_http``, signed requests, the outbox and
the scheduler), on a SQLite file migrated at start. Around it: the Slack stand-in with the
page, the PagerDuty receiver (HTTPS, a certificate made at start) and, for the demo, the
Kubernetes stand-in and the demo services. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from bot.app.incidents import describe_target
from bot.config.loader import load_config
from bot.config.schema import Config
from bot.domain.errors import DeployError
from bot.integrations.pagerduty import PagerDuty
from bot.integrations.rollback_targets import RollbackTarget
from bot.ops.settings import Settings
from bot.server import Bot, create_bot, serve_http
from bot.storage.db import upgrade
from sandbox.cluster import Cluster
from sandbox.demo import (
    DEMO_USERS,
    DemoUser,
    channels_of,
    clear_directory,
    demo_services,
    user_groups,
    users_for,
    write_demo_config,
)
from sandbox.pagerduty import FakePagerDuty
from sandbox.services import DemoServices
from sandbox.serving import WaitressInBackground
from sandbox.slack_api import FakeSlack
from sandbox.slack_requests import SlackRequests
from sandbox.web import Changes, Page
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)
TOKEN = "xoxb-sandbox"
ROUTING_KEY = "sandbox" + "0" * 25  # 32 characters, as PagerDuty wants; goes nowhere else


@dataclass(frozen=True)
class SandboxOptions:
    """How to run the sandbox.

    Attributes:
        config: A team's deploybot.yaml; None runs the demo (``sandbox/demo_config``).
        port: The page's port on 127.0.0.1 (0: any free one).
        directory: Where the database and generated files go, kept after the sandbox stops
            (a run clears what the one before left there); None: a temporary directory,
            removed at the end.
        database_url: The bot's database instead of ``sandbox.db`` in ``directory``
            (migrated at start, never cleared).
        publish_interval: How often the bot coalesces message updates (seconds).
    """

    config: Path | None = None
    port: int = 3100
    directory: Path | None = None
    database_url: str | None = None
    publish_interval: float = 0.3


class Sandbox:
    """Everything ``deploybot sandbox`` runs. ``start()``, then ``close()`` (or ``with``)."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.changes = Changes()
        self.page = Page(self.changes)
        self.directory = Path()
        self.fake: FakeSlack | None = None
        self.pagerduty: FakePagerDuty | None = None
        self.cluster: Cluster | None = None
        self.services: DemoServices | None = None
        self.bot: Bot | None = None
        self.workspace: Workspace | None = None
        self.bot_url = ""
        self.database_url = ""
        self.config_path: Path | None = None
        self._server: WaitressInBackground | None = None
        self._environ: dict[str, str | None] = {}
        self._temporary = False
        self._secret = secrets.token_hex(16)

    @property
    def kept(self) -> bool:
        """Whether the database and the config a report needs outlive the sandbox."""
        options = self.options
        return options.directory is not None or None not in (options.database_url, options.config)

    def report_command(self, session: str = "N") -> str:
        """The command that prints a sandbox session's report, once the sandbox has started."""
        import shlex

        assert self.config_path is not None, "start() first"
        return (
            f"deploybot report {session} -c {shlex.quote(str(self.config_path))} "
            f"--database-url {shlex.quote(self.database_url)}"
        )

    @property
    def url(self) -> str:
        """The page: ``http://127.0.0.1:<port>/``."""
        assert self.fake is not None, "start() first"
        return self.fake.url + "/"

    def start(self) -> Self:
        """Start every part, the bot last; on any failure stop what had started.

        Raises:
            DeployError: the port is taken, the config is invalid, the bot won't start.
        """
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self._make_directory()
        try:
            self.fake = FakeSlack(
                token=TOKEN, port=self.options.port, pages=self.page, on_change=self.changes.bump
            )
        except OSError as error:
            raise DeployError(
                f"can't listen on 127.0.0.1:{self.options.port} ({error.strerror}): "
                "pass another --port, or --port 0 for any free one"
            ) from None
        self.pagerduty = FakePagerDuty(on_change=self.changes.bump)
        if self.options.config is None:
            config_path = self._start_demo()
            users = list(DEMO_USERS)
        else:
            config_path = self.options.config.resolve()
            users = []
        self.config_path = config_path
        config = load_config(config_path)  # ConfigError lists every problem
        users = users or users_for(config)
        self._fill_slack(config, users)
        self._set_routing_keys(config)
        self._start_bot(config_path)
        assert self.bot is not None
        if self.options.config is not None:
            # A team's rollback targets act on real systems: the sandbox only says what it
            # would run. Probes are read-only and run for real.
            self.bot.rollbacks.run_step = _dry_run
        self.workspace = Workspace(
            fake=self.fake,
            requests=SlackRequests(self._secret, self.bot_url + "/slack/events", fake=self.fake),
            users=users,
            channels=channels_of(config),
            pagerduty=self.pagerduty,
            cluster=self.cluster,
            services=self.services,
            changed=self.changes.bump,
        )
        self.page.workspace = self.workspace
        self.changes.bump()

    def _make_directory(self) -> None:
        if self.options.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="deploybot-sandbox-"))
            self._temporary = True
        else:
            self.directory = self.options.directory.resolve()
            self.directory.mkdir(parents=True, exist_ok=True)
            clear_directory(self.directory)

    def _start_demo(self) -> Path:
        self.cluster = Cluster(on_change=self.changes.bump)
        self.services = DemoServices(
            demo_services(), kube=self.cluster.kube, on_change=self.changes.bump
        )
        kubeconfig = self.cluster.kubeconfig(self.directory / "kubeconfig")
        # The bot's Kubernetes probes and rollbacks read KUBECONFIG when they run.
        self._setenv("KUBECONFIG", str(kubeconfig))
        return write_demo_config(self.directory, self.services.origin)

    def _fill_slack(self, config: Config, users: list[DemoUser]) -> None:
        assert self.fake is not None
        for user in users:
            handle = user.name.split()[0].lower()
            self.fake.users[user.id] = {
                "name": handle,
                "real_name": user.name,
                "profile": {"real_name": user.name, "display_name": handle, "title": user.title},
            }
        for group_id, handle in user_groups(config).items():
            self.fake.usergroups[group_id] = []
            self.fake.usergroup_handles[group_id] = handle
        for channel in channels_of(config):
            self.fake.channel_id(channel)

    def _set_routing_keys(self, config: Config) -> None:
        """Pages go to the local receiver; a key the environment lacks gets a stand-in."""
        for env in config.environments.values():
            if env.pagerduty is not None and not os.environ.get(env.pagerduty.routing_key_env):
                self._setenv(env.pagerduty.routing_key_env, ROUTING_KEY)

    def _start_bot(self, config_path: Path) -> None:
        assert self.fake is not None and self.pagerduty is not None
        database_url = self.options.database_url or f"sqlite:///{self.directory / 'sandbox.db'}"
        upgrade(database_url)
        self.database_url = database_url
        settings = Settings(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=self._secret,
            SLACK_APP_TOKEN="",
            SLACK_API_URL=self.fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(config_path),
            DEPLOYBOT_SCHEDULER_POLL=0.5,
            DEPLOYBOT_SCHEDULER_SYNC=1.0,
        )
        pagerduty = PagerDuty(
            events_url=self.pagerduty.url, verify=self.pagerduty.client_ssl_context()
        )
        self.bot = create_bot(
            settings,
            config_path=config_path,
            publish_interval=self.options.publish_interval,
            pagerduty=pagerduty,
        )
        self.bot.start()
        self._server = WaitressInBackground(
            serve_http(self.bot, host="127.0.0.1", port=0, threads=8), name="sandbox-bot"
        )
        self.bot_url = f"http://127.0.0.1:{self._server.port}"

    def _setenv(self, name: str, value: str) -> None:
        self._environ.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def close(self) -> None:
        """Stop everything that started, newest first; safe to call twice."""
        self.changes.close()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.bot is not None:
            self.bot.close()
            self.bot = None
        for part in (self.services, self.cluster, self.pagerduty, self.fake):
            if part is not None:
                part.close()
        self.services = self.cluster = self.pagerduty = self.fake = None
        for name, value in self._environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._environ.clear()
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._temporary = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _dry_run(target: RollbackTarget) -> str:
    return f"sandbox: would run {describe_target(target)} (rollbacks are not run in the sandbox)"
