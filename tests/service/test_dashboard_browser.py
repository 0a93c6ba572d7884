"""The dashboard in a real browser against a real server, while a load generator runs.

Chromium (Debian's, through Playwright) watches ``GET /dashboard`` of ``banditops serve``:
a client key sees every version's status and traffic share; a planted bad version's rollback
appears with its evidence while predictions and feedback flow; an admin action is refused for
a client key (the server's 403 message shown) and done with an admin key (its event shown);
and no request leaves the test server. Full-page screenshots go to ``$BANDITOPS_SCREENSHOTS``
or ``screenshots/`` at the repository root.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from banditops.client import Client
from banditops.service.docs import DeploymentState
from tests.browser import forbid_network, screenshot
from tests.service.conftest import ADMIN_KEY, CLIENT_KEY, Server, headers, write_config
from tests.service.models import as_features, make_rows
from tests.service.test_shadow_service import Traffic

DEPLOYMENTS = """
[deployments.main]
policy = "epsilon-greedy"
policy_params = { epsilon = 0.5, seed = 3 }
features = FEATURES
guardrail = { min_samples = 40, margin = 0.1, check_every = 5 }
[[deployments.main.versions]]
name = "good"
artifact = "ARTIFACTS/good.skops"
[[deployments.main.versions]]
name = "good2"
artifact = "ARTIFACTS/good2.skops"
[[deployments.main.versions]]
name = "bad"
artifact = "ARTIFACTS/bad.skops"

[deployments.other]
policy = "thompson"
features = FEATURES
[[deployments.other.versions]]
name = "solo"
artifact = "ARTIFACTS/good.skops"

[deployments.shadowed]  # a version registered here stays dark: it needs 100,000 paired rewards
policy = "thompson"
features = FEATURES
release = { mode = "dark", min_samples = 100000 }
[[deployments.shadowed.versions]]
name = "champion"
artifact = "ARTIFACTS/good.skops"
"""
WAIT_MS = 90_000  # generous: two busy cores shared with other work
X, Y = make_rows(4000, seed=11)


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("dashboard")
    config = write_config(folder, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)))
    running = Server(config).start()
    yield running
    running.stop()


class Load(threading.Thread):
    """Predictions in batches of 10 and their labels, until stopped; counts what it sent."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.sent, self.failures = 0, []

    def run(self) -> None:
        url = f"{self.server.url}/v1/deployments/main"
        with httpx.Client(headers=headers(), timeout=30) as http:
            row = 0
            while not self.stop.is_set():
                rows = [(row + i) % len(X) for i in range(10)]
                row += 10
                answer = http.post(f"{url}/predict",
                                   json={"instances": [as_features(X[i]) for i in rows]})
                if answer.status_code != 200:
                    self.failures.append(answer.text)
                    continue
                labels = [{"decision_id": d["decision_id"], "label": int(Y[i])}
                          for d, i in zip(answer.json()["decisions"], rows, strict=True)]
                if http.post(f"{url}/feedback", json=labels).status_code != 200:
                    self.failures.append("feedback")
                self.sent += 10
                self.stop.wait(0.02)  # ~400 requests/s at most: a busy service, not a flood


@pytest.fixture(scope="module")
def load(server) -> Iterator[Load]:
    generator = Load(server)
    generator.start()
    yield generator
    generator.stop.set()
    generator.join(30)
    assert not generator.failures, generator.failures[:3]


@pytest.fixture
def dashboard(page: Page, server) -> Iterator[Page]:
    """The page, with every request outside the test server aborted (and checked after)."""
    aborted = forbid_network(page, allow=server.url)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    yield page
    assert aborted == [], f"requests left localhost: {aborted}"
    assert violations == [], violations


def sign_in(page: Page, server: Server, key: str) -> None:
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#versions tbody tr").first).to_be_visible(timeout=WAIT_MS)


def row(page: Page, version: str):
    return page.locator(f'#versions tbody tr[data-version="{version}"]')


def test_nothing_without_a_key_and_a_client_key_sees_every_version(dashboard, server):
    """Runs first, before the module's load generator starts: the shares stand still."""
    page = dashboard
    answer = httpx.get(f"{server.url}/dashboard")
    assert answer.status_code == 200 and "Content-Security-Policy" in answer.headers
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("#login-form")).to_be_visible()
    assert page.locator("#view").is_hidden() and page.locator("#session").is_hidden()

    page.fill("#key", "not-a-key-of-this-server")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("unknown API key")
    assert page.locator("#view").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    screenshot(page, "dashboard-login-refused.png")

    sign_in(page, server, CLIENT_KEY)
    report = httpx.get(f"{server.url}/v1/deployments/main", headers=headers()).json()
    assert [v["name"] for v in report["versions"]] == ["good", "good2", "bad"]
    for version in report["versions"]:
        shown = row(page, version["name"])
        expect(shown.locator(".badge")).to_have_text(version["status"].replace("_", " "))
        expect(shown.locator(".share")).to_have_text(f"{100 * version['traffic_share']:.1f} %")
        # "not judged yet" says what the guardrail waits for (min_samples = 40 here)
        assert (version["judgement"], version["guardrail_rewards"]) == ("not judged yet", 0)
        expect(shown.locator(".judgement")).to_have_text(
            "not judged yet: 0 of 40 rewards since it went live")
        expect(shown.locator(".judgement")).to_have_attribute(
            "title", re.compile(r"no verdict until both have 40 of them"))
    assert report["guardrail_min_samples"] == 40
    # a registration's evidence is just its details; "Evidence" is for verdicts
    registered = page.locator('#events li[data-kind="registered"]').first
    expect(registered.locator("summary")).to_have_text(re.compile(r"^Details \(\d+ fields\)$"))
    expect(registered.locator(".evidence-table")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('banditops.key')") == CLIENT_KEY
    expect(page.locator("#updated")).to_contain_text("s ago")
    screenshot(page, "dashboard-client-view.png")

    page.select_option("#deployment", "other")
    expect(row(page, "solo").locator(".badge")).to_have_text("live")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    assert page.locator("#versions tbody tr").count() == 0
    assert page.evaluate("sessionStorage.getItem('banditops.key')") is None


def test_a_bad_version_rollback_appears_with_its_evidence_under_load(dashboard, server, load):
    page = dashboard
    sign_in(page, server, CLIENT_KEY)
    expect(row(page, "bad").locator(".badge")).to_have_text("rolled back", timeout=WAIT_MS)
    event = page.locator('#events li[data-kind="rolled_back"]').filter(has_text="bad").first
    expect(event).to_be_visible(timeout=WAIT_MS)
    expect(event.locator(".reason")).not_to_be_empty()
    evidence = event.locator(".evidence-table")
    expect(evidence).to_be_visible()  # opened by default for a rollback
    expect(event.locator("summary")).to_have_text(re.compile(r"^Evidence \(\d+ fields\)$"))
    api = next(e for e in httpx.get(f"{server.url}/v1/deployments/main/events",
                                    headers=headers()).json()["events"]
               if e["kind"] == "rolled_back" and e["version"] == "bad")
    expect(event.locator(".reason")).to_have_text(api["reason"])
    keys = evidence.locator("th").all_inner_texts()
    assert "mean" in keys and len(keys) >= 3, keys
    # the charts are drawn from the history route while the load runs
    sent = load.sent
    expect(page.locator("#chart-share polyline").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#chart-reward polygon").first).to_be_attached(timeout=WAIT_MS)
    # Feedback is immediate here, so its line lies on the decisions line: decisions are a
    # wide pale band under the thin feedback line, and both show.
    counts = page.locator("#chart-counts")
    expect(counts.locator("g.series.total polyline").first).to_be_attached()
    expect(counts.locator("g.series.feedback polyline").first).to_be_attached()
    widths = [counts.locator(f"g.series.{name} polyline").first.evaluate(
        "node => parseFloat(getComputedStyle(node).strokeWidth)")
        for name in ("total", "feedback")]
    assert widths[0] >= 3 * widths[1], widths
    before = page.locator("#updated").inner_text()
    expect(page.locator("#updated")).not_to_have_text(before, timeout=WAIT_MS)  # it refreshes
    deadline = time.monotonic() + 60
    while load.sent <= sent:  # the load really is running while the page watches
        assert time.monotonic() < deadline, "the load generator stalled"
        time.sleep(0.05)
    screenshot(page, "dashboard-rollback-under-load.png")


def act(page: Page, version: str, action: str, reason: str) -> None:
    row(page, version).locator(f'button[data-action="{action}"]').click()
    expect(page.locator("#confirm")).to_be_visible()
    page.fill("#reason", reason)
    page.click("#confirm-ok")
    expect(page.locator("#confirm")).to_be_hidden()


def test_admin_actions_are_refused_for_a_client_key_and_done_for_an_admin_key(
        dashboard, server, load):
    page = dashboard
    sign_in(page, server, CLIENT_KEY)
    expect(row(page, "good2").locator(".badge")).to_have_text("live")
    row(page, "good2").locator('button[data-action="rollback"]').click()  # then cancel
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert page.locator("#notice").is_hidden()
    act(page, "good2", "rollback", "from the dashboard")
    expect(page.locator("#notice")).to_contain_text(
        "this API key has the client scope; this needs admin")
    expect(page.locator("#notice")).to_contain_text("403")
    # after the 403 the page knows this key cannot act: every action button is disabled
    buttons = page.locator("#versions button[data-action]")
    expect(buttons.first).to_be_disabled()
    for index in range(buttons.count()):
        expect(buttons.nth(index)).to_be_disabled()
        expect(buttons.nth(index)).to_have_attribute("title", re.compile("^needs an admin key"))
    expect(page.locator("#notice")).to_contain_text("they need an admin key")
    screenshot(page, "dashboard-client-refused.png")
    assert httpx.get(f"{server.url}/v1/deployments/main", headers=headers()).json()[
        "versions"][1]["status"] == "live"

    page.click("#logout")
    sign_in(page, server, ADMIN_KEY)
    expect(row(page, "good2").locator('button[data-action="rollback"]')).to_be_enabled()
    act(page, "good2", "rollback", "canary <b>looked</b> odd")  # markup stays text
    expect(page.locator("#notice")).to_contain_text("good2 is now rolled back")
    newest = page.locator("#events li").first
    expect(newest).to_have_attribute("data-kind", "rolled_back", timeout=WAIT_MS)
    expect(newest.locator(".reason")).to_have_text("canary <b>looked</b> odd")
    expect(newest).to_have_class("event kind-rolled_back new")
    expect(row(page, "good2").locator(".badge")).to_have_text("rolled back")
    screenshot(page, "dashboard-admin-rollback.png")

    act(page, "good2", "reinstate", "")
    expect(page.locator("#events li").first).to_have_attribute("data-kind", "reinstated",
                                                               timeout=WAIT_MS)
    expect(row(page, "good2").locator(".badge")).to_have_text("live", timeout=WAIT_MS)
    kinds = [(e["kind"], e["version"], e["reason"]) for e in httpx.get(
        f"{server.url}/v1/deployments/main/events?limit=1000",
        headers=headers()).json()["events"]]
    assert ("rolled_back", "good2", "canary <b>looked</b> odd") in kinds
    assert ("reinstated", "good2", "reinstated through the API") in kinds


def test_a_dark_version_shows_its_paired_evidence(dashboard, server):
    """A dark version serves nobody: its Evaluation cell shows the shadow rewards that
    decide it, against the best live version's reward."""
    page = dashboard
    with Client(server.url, ADMIN_KEY, timeout=WAIT_MS / 1000) as admin:  # the load runs
        assert admin.register("shadowed", "candidate", "bad.skops")["status"] == "dark"
        traffic = Traffic(server, admin, "shadowed")
        for _ in range(2):
            traffic.round()
        answer = admin.deployment("shadowed")
        DeploymentState.model_validate(answer)  # the new fields are as the API docs say
        report = {v["name"]: v for v in answer["versions"]}
    candidate, champion = report["candidate"], report["champion"]
    assert candidate["status"] == "dark" and candidate["shadow_rewards"] == 100
    sign_in(page, server, CLIENT_KEY)
    page.select_option("#deployment", "shadowed")
    shown = row(page, "candidate")
    expect(shown.locator(".badge")).to_have_text("dark")
    mean, best = (page.evaluate("x => Number(x.toPrecision(3)).toString()", value)
                  for value in (candidate["shadow_reward_mean"], champion["reward_mean"]))
    expect(shown.locator(".judgement")).to_have_text(
        f"evaluating: 100 paired rewards, mean {mean} vs best live {best}")
    expect(shown.locator(".shadow")).to_have_text(f"100 · {mean}")
    expect(row(page, "champion").locator(".shadow")).to_have_text("—")
    # the live version's 100 served rewards, counted by the guardrail (default min_samples)
    assert champion["guardrail_rewards"] == 100
    expect(row(page, "champion").locator(".judgement")).to_have_text(
        "not judged yet: 100 of 200 rewards since it went live")
    screenshot(page, "dashboard-dark-version.png")


def test_an_unreachable_server_shows_a_banner(page, tmp_path, artifacts):
    config = write_config(tmp_path, artifacts, DEPLOYMENTS.replace("ARTIFACTS", str(artifacts)))
    other = Server(config).start()
    try:
        aborted = forbid_network(page, allow=other.url)
        sign_in(page, other, CLIENT_KEY)
        expect(page.locator("#banner")).to_be_hidden()
        other.stop()
        expect(page.locator("#banner")).to_contain_text("Cannot reach the server",
                                                        timeout=WAIT_MS)
        expect(row(page, "good")).to_be_visible()  # the last figures stay
        screenshot(page, "dashboard-unreachable.png")
        assert aborted == []
    finally:
        other.stop()
