"""``deploybot sandbox`` in a real browser: Debian's headless chromium, driven by Playwright.

The test acts as the demo's people on the page: the deployer starts a deploy and ticks
items, a modal refuses an empty reason, the outsider is refused, the approvers sign off, a
service breaks, the incident thread opens, on-call rolls back through the confirm dialog and
the session ends rolled back. Screenshots are taken along the way (in ``tmp_path``); what
they show is checked through the DOM. With ``DEPLOYBOT_UPDATE_SCREENSHOT=1`` the mid-session
one is also written to ``docs/sandbox.png`` (the README's picture).

Without chromium (or Playwright) the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.domain import SessionState
from sandbox.app import Sandbox, SandboxOptions

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "sandbox.png"
TIMEOUT = 20_000  # ms, for each wait on the page


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the browser test")
    pytest.skip(why)


@dataclass
class Browser:
    """The page, and where its screenshots go."""

    page: Any
    shots: Path
    count: int = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def act_as(self, user: str) -> None:
        self.page.select_option("#user", user)
        self.page.wait_for_function(
            "u => document.querySelector('#user-title').textContent.startsWith(u)", arg=user
        )

    def channel(self, name: str) -> None:
        self.page.click(f"#channels li[data-channel-name='{name}']")

    def summary(self) -> Any:
        return self.page.locator("#messages .message[data-kind='message']", has_text="Deploy #1")

    def checklist(self, title: str) -> Any:
        header = self.page.locator(".block.header", has_text=title)
        return self.page.locator("#thread-messages .message[data-kind='message']", has=header)

    def click_summary(self, text: str) -> None:
        self.summary().get_by_role("button", name=text, exact=True).click()

    def wait_text(self, locator: Any, text: str) -> None:
        from playwright.sync_api import expect

        expect(locator).to_contain_text(text, timeout=TIMEOUT)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[Sandbox, Browser]]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        _missing("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install playwright)")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with (
        Sandbox(SandboxOptions(port=0, directory=tmp_path / "sandbox")).start() as sandbox,
        sync_playwright() as playwright,
    ):
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1500, "height": 950})
            page.set_default_timeout(TIMEOUT)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(sandbox.url)
            yield sandbox, Browser(page, shots)
            assert errors == [], f"the page's script failed: {errors}"
        finally:
            chromium.close()


def test_a_deploy_fails_and_is_rolled_back_in_the_browser(
    browser: tuple[Sandbox, Browser],
) -> None:
    from playwright.sync_api import expect

    sandbox, b = browser
    page = b.page
    expect(page.locator("#channels li")).to_have_text(["# deploys", "# incidents", "🏠 Home"])

    # The deployer opens a deploy; the answer shows to them only.
    b.act_as("U0DEPLOYER")
    page.fill("#command", "/deploy start staging")
    page.press("#command", "Enter")
    b.wait_text(page.locator("#messages .ephemeral"), "Opened deploy #1 of staging")
    b.wait_text(b.summary(), "Deploy #1: staging")
    expect(b.summary()).to_contain_text("QA Lead: missing")
    b.summary().locator(".replies-link").click()
    readiness = b.checklist("Pre-Deployment / Change readiness")
    b.wait_text(readiness, "0/4 done")
    b.shot("started")

    # Tick the four readiness items, one click each, as a person would.
    for n in range(1, 5):
        readiness.locator(f"input[value='1.{n}']").check()
        b.wait_text(readiness, f"{n}/4 done")
    expect(readiness.locator("input:checked")).to_have_count(4)
    expect(b.summary()).to_contain_text("Change readiness 4/4")

    # Skip an item through the modal: an empty reason is refused in the modal first.
    b.checklist("Pre-Deployment / Environment").get_by_role("button", name="Skip an item…").click()
    modal = page.locator(".dialog[data-callback-id='deploy.skip_modal']")
    expect(modal.locator("header")).to_have_text("Skip an item")
    modal.locator("select[name='skip_item']").select_option("2.1")
    modal.get_by_role("button", name="Skip item").click()
    b.wait_text(modal.locator(".input-block[data-block-id='skip_reason'] .error"), "required")
    b.shot("modal-error")
    modal.locator("textarea[name='skip_reason']").fill("No incident tooling in the sandbox")
    modal.get_by_role("button", name="Skip item").click()
    expect(modal).to_have_count(0)
    b.wait_text(b.checklist("Pre-Deployment / Environment"), "skipped by @Dana Deployer")

    # The outsider may not sign off: the refusal shows to them, and to nobody else.
    b.act_as("U0OUTSIDER")
    b.click_summary("Sign off as QA Lead")
    refusal = page.locator("#messages .ephemeral", has_text="can't sign off as QA Lead")
    b.wait_text(refusal, "only members of")
    b.shot("outsider-refused")
    b.act_as("U0DEPLOYER")
    expect(page.locator("#messages .ephemeral", has_text="can't sign off")).to_have_count(0)

    # The approvers sign off; the deploy gate opens.
    b.act_as("U0QALEAD")
    b.click_summary("Sign off as QA Lead")
    b.wait_text(b.summary(), "QA Lead: @Priya Shah")
    b.act_as("U0OPSLEAD")
    b.click_summary("Sign off as DevOps Lead")
    b.wait_text(b.summary(), "DevOps Lead: @Marcus Webb")
    expect(b.summary().get_by_role("button", name="Sign off as QA Lead")).to_have_count(0)

    b.act_as("U0DEPLOYER")
    b.click_summary("Start deployment")
    b.wait_text(b.summary(), "deploying")
    b.click_summary("Deployed: verify")
    b.wait_text(b.summary(), "verifying")
    automated = b.checklist("Automated checks")
    b.wait_text(automated, "3/3 done")
    expect(automated).to_contain_text("probe passed")
    page.locator("#thread-messages").evaluate("e => { e.scrollTop = 0; }")
    mid_session = b.shot("verified")
    if os.environ.get("DEPLOYBOT_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(mid_session, DOCS_SCREENSHOT)

    # The checkout service breaks; the next probe round fails and pages on-call.
    service = page.locator("[data-service='staging/checkout']")
    service.get_by_role("button", name="Break service").click()
    b.wait_text(service, "failing")
    b.click_summary("Run probes")
    b.wait_text(b.summary(), "failed")
    b.wait_text(page.locator("#pages"), "triggered")
    b.act_as("U0ONCALL")
    b.channel("incidents")
    incident = page.locator("#messages .message[data-kind='message']").first
    b.wait_text(incident, "staging-checkout-health")
    expect(incident.locator(".bk-button")).to_have_text(["Acknowledge", "Roll back", "Resolve"])
    expect(incident.locator(".bk-button.danger")).to_have_text("Roll back")
    b.shot("incident")

    # On-call rolls back, through Slack's confirm dialog.
    incident.get_by_role("button", name="Roll back").click()
    confirm = page.locator(".dialog.confirm")
    expect(confirm.locator("header")).to_have_text("Roll back deploy #1?")
    expect(confirm).to_contain_text("rollout undo deployment/checkout -n staging")
    b.shot("confirm-rollback")
    confirm.locator("[data-confirm='yes']").click()
    b.wait_text(page.locator("#messages .ephemeral"), "Rolling back deploy #1")
    b.wait_text(page.locator("#pages"), "resolved")
    incident.locator(".replies-link").click()
    b.wait_text(page.locator("#thread-messages"), "Rolled back, and the probes pass")

    b.channel("deploys")
    b.wait_text(b.summary(), "rolled back")
    expect(b.summary().locator(".bk-button")).to_have_count(0)  # closed: nothing left to click
    b.wait_text(page.locator("[data-deployment='staging/checkout']"), "v1.4.1 · revision 3")
    b.wait_text(service, "healthy")
    b.shot("rolled-back")
    assert len(list(b.shots.glob("*.png"))) == 7
    # What the page showed is what the bot recorded.
    assert sandbox.bot is not None
    assert sandbox.bot.runtime.service.get(1).state is SessionState.ROLLED_BACK
