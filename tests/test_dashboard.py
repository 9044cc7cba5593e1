"""The web dashboard (daemon/ui/: index.html, app.js, style.css) in a real browser: Playwright driving Debian's
chromium-headless-shell against a real daemon's TCP listener. The table, a crash turning its row red, a log
followed live, a read token's page without controls, a daemon that goes away and comes back, and the admin's
restart, scale and rollback buttons.

Each test starts its own daemon (`--metrics-interval 0.5`, so that charts fill quickly) and its own browser,
both ended at teardown whatever happened. Screenshots go to $ORCHESTRATOR_SCREENSHOTS (a directory) when it is
set, else to the test's tmp_path. Skipped without playwright (pip) or the browser binary; `playwright install`
is never needed."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon and test_http_api are redefined as arguments

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_daemon import Orchestrator, orch, process  # noqa: F401 - orch is a fixture
from test_http_api import Listener, _free_port, listener, start, tokens  # noqa: F401 - fixtures

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the skip below says why
    sync_playwright = None

CHROMIUM = shutil.which("chromium-headless-shell") or "/usr/bin/chromium-headless-shell"
VIEWPORT = {"width": 1280, "height": 800}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no browser: {CHROMIUM} is missing (Debian: apt-get install chromium-headless-shell)"),
]

PY = "python3"
SLEEPER = [PY, "-c", "import time; time.sleep(1000)"]
# Busy now and then, and a line of output each time.
WEB = ("import itertools, time\nfor n in itertools.count():\n sum(range(300000))\n"
       " print(f'GET /items/{n} 200 {n % 7 + 1} ms', flush=True); time.sleep(0.25)")


def manifest(name: str, command: list[str], namespace: str | None = None, **spec: Any) -> str:
    """test_daemon's `process` document, in `namespace` if given."""
    text = process(name, command, **spec)
    if namespace:
        text = text.replace(f'"name": "{name}"', f'"name": "{name}", "namespace": "{namespace}"', 1)
    return text


class Daemons:
    """The daemons a test starts on one state dir and address (one at a time), all waited for at teardown."""

    def __init__(self, orch: Orchestrator, metrics_interval: str = "0.5") -> None:
        self.orch = orch
        self.metrics_interval = metrics_interval
        self.address = f"127.0.0.1:{_free_port()}"
        self.url = f"http://{self.address}"
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.children.append(start(self.orch, "--metrics-interval", self.metrics_interval,
                                   address=self.address))
        wait_for(self.orch.answers, timeout=15, what="the daemon answering")

    def stop(self) -> None:
        assert self.orch.close() == [], "shutdown left processes running"
        for child in self.children:
            child.wait(timeout=15)


def _daemons(orch: Orchestrator, metrics_interval: str) -> Iterator[Daemons]:
    daemons = Daemons(orch, metrics_interval)
    try:
        daemons.start()
        yield daemons
    finally:
        orch.close()
        for child in daemons.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def daemon(orch: Orchestrator, tokens: dict[str, str]) -> Iterator[Daemons]:
    """A daemon with its TCP listener, sampling every 0.5 s (so the page polls every second)."""
    yield from _daemons(orch, "0.5")


@pytest.fixture
def slow_daemon(orch: Orchestrator, tokens: dict[str, str]) -> Iterator[Daemons]:
    """... sampling every 30 s: what the page shows within a second came by its event stream, not its poll."""
    yield from _daemons(orch, "30")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A browser of this test only (its processes must be gone when the test ends: conftest checks)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text
              else None)
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"the page raised or broke its CSP: {errors}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ORCHESTRATOR_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page: Page, daemon: Daemons, token: str, scope: str) -> None:
    page.goto(daemon.url + "/ui/")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-scope", scope)
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


def row(page: Page, key: str) -> Any:
    return page.locator(f'#processes tbody tr[data-key="{key}"]')


def apply(orch: Orchestrator, *docs: str) -> None:
    orch.write("m/all.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))


# -- the tests ------------------------------------------------------------------------------------------------


def test_the_table_shows_the_running_stack(orch: Orchestrator, tokens: dict[str, str], daemon: Daemons,
                                           page: Page, shots: Path) -> None:
    folder = orch.root / "m"
    orch.write("m/all.yaml", "---\n".join([
        manifest("worker", SLEEPER, labels={"tier": "back"}),
        manifest("web", [PY, "-c", WEB], namespace="shop", labels={"app": "web"})]))
    git = shutil.which("git")
    commit = None
    if git:  # the revision records the manifests' commit, and that they have local changes
        for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "m"]):
            subprocess.run([git, "-C", str(folder), *argv], check=True, capture_output=True)
        commit = subprocess.run([git, "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        (folder / "notes.txt").write_text("uncommitted\n")
    orch.ok("apply", "-f", str(folder))
    orch.wait_running("worker", "web")

    log_in(page, daemon, tokens["admin"], "admin")
    for key in ("default/worker", "shop/web"):
        expect(row(page, key)).to_have_attribute("data-state", "Running")
        expect(row(page, key).locator("td.ready")).to_have_text("1/1")
        expect(row(page, key)).not_to_have_class(re.compile(r"\bbad\b"))
    expect(row(page, "shop/web").locator("td.namespace")).to_have_text("shop")
    expect(page.locator("#processes tbody tr")).to_have_count(2)
    expect(page.locator("#revision")).to_contain_text("revision 1")
    if commit:
        expect(page.locator("#revision .commit")).to_have_text(commit[:7])
        expect(page.locator("#revision .dirty")).to_have_text("dirty")
    # Events, newest first, each with its id.
    events = page.locator("#events li")
    expect(events.filter(has_text="Started")).to_have_count(2)
    ids = [int(i) for i in events.evaluate_all("items => items.map(li => li.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 3
    # cpu and memory from the sampler, and a chart of its history (the poll comes every second here).
    expect(row(page, "shop/web").locator("td.memory")).to_have_text(re.compile(r"\d(\.\d)?[KMG]i$"))
    expect(row(page, "shop/web").locator("svg.spark polyline.cpu")).to_have_count(1, timeout=10_000)
    expect(row(page, "default/worker").locator("svg.spark polyline.memory")).to_have_count(1, timeout=10_000)
    # Filters: a namespace, then a label selector (sent to the daemon).
    page.select_option("#namespace", "shop")
    expect(page.locator("#processes tbody tr")).to_have_count(1)
    page.select_option("#namespace", "")
    page.fill("#labels", "tier=back")
    page.press("#labels", "Enter")
    expect(page.locator("#processes tbody tr")).to_have_count(1)
    expect(row(page, "default/worker")).to_have_count(1)
    page.fill("#labels", "")
    page.press("#labels", "Enter")
    expect(page.locator("#processes tbody tr")).to_have_count(2)
    # The screenshot: web's log followed, a few samples in the charts.
    row(page, "shop/web").locator("td.name").click()
    expect(page.locator("#log div.line").nth(5)).to_be_visible(timeout=5000)
    page.wait_for_function("() => document.querySelector('tr[data-key=\"shop/web\"] polyline.cpu')"
                           ".getAttribute('points').split(' ').length >= 6", timeout=10_000)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)


def test_a_crash_turns_the_row_red_within_a_second(orch: Orchestrator, tokens: dict[str, str],
                                                   slow_daemon: Daemons, page: Page) -> None:
    daemon = slow_daemon  # the page polls every 30 s: the row must turn red by the event stream
    # A long backoff: after the crash the worker stays in BackOff for a minute.
    apply(orch, manifest("worker", SLEEPER, restartPolicy="Always", backoff={"initialSeconds": 60}),
          manifest("other", SLEEPER))
    pid = orch.wait_running("worker", "other")["worker"][0]
    log_in(page, daemon, tokens["admin"], "admin")
    worker = row(page, "default/worker")
    expect(worker).to_have_attribute("data-state", "Running")
    expect(worker).not_to_have_class(re.compile(r"\bbad\b"))
    began = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    expect(worker).to_have_class(re.compile(r"\bbad\b"), timeout=1000)
    took = time.monotonic() - began
    assert took < 1.0, f"the row turned red {took:.2f} s after the kill"
    expect(worker).to_have_attribute("data-state", "BackOff")
    assert worker.evaluate("tr => getComputedStyle(tr).backgroundColor") != "rgba(0, 0, 0, 0)"  # styled
    expect(row(page, "default/other")).not_to_have_class(re.compile(r"\bbad\b"))
    exited = page.locator("#events li[data-type=Exited]").filter(has_text="default/worker")
    expect(exited).to_contain_text("SIGKILL")


def test_the_log_pane_follows_the_selected_replica(orch: Orchestrator, tokens: dict[str, str], daemon: Daemons,
                                                   page: Page) -> None:
    ticker = ("import itertools, time\nprint('<b id=evil>bold</b> &amp;', flush=True)\n"
              "for i in itertools.count():\n print(f'line {i}', flush=True); time.sleep(0.2)")
    apply(orch, manifest("ticker", [PY, "-c", ticker]),
          manifest("quiet", [PY, "-c", "import time; print('quiet ready', flush=True); time.sleep(1000)"]))
    orch.wait_running("ticker", "quiet")
    log_in(page, daemon, tokens["admin"], "admin")
    row(page, "default/ticker").locator("td.name").click()
    expect(page.locator("#log-target")).to_have_text("default/ticker [0]")
    expect(row(page, "default/ticker")).to_have_class(re.compile(r"\bselected\b"))
    lines = page.locator("#log div.line")
    expect(lines.filter(has_text=re.compile(r"^line \d+$")).first).to_be_visible(timeout=5000)
    first = int(lines.filter(has_text=re.compile(r"^line \d+$")).last.inner_text().split()[1])
    # A line printed after the pane opened shows up while it is watched.
    expect(lines.filter(has_text=re.compile(rf"^line {first + 3}$"))).to_have_count(1, timeout=5000)
    # Output is text, never markup.
    expect(lines.filter(has_text="<b id=evil>bold</b> &amp;")).to_have_count(1)
    expect(page.locator("#log b, #evil")).to_have_count(0)
    # Switching closes the previous stream: the ticker's lines stop coming.
    row(page, "default/quiet").locator("td.name").click()
    expect(page.locator("#log-target")).to_have_text("default/quiet [0]")
    expect(lines).to_have_text(["quiet ready"])
    ticked = orch.api("GET", "/logs?name=ticker&tail=1")["next"]
    wait_for(lambda: orch.api("GET", "/logs?name=ticker&tail=1")["next"] >= ticked + 3 * len("line 100\n"),
             timeout=5, what="the ticker printing 3 more lines")
    expect(lines).to_have_text(["quiet ready"])


def test_a_read_token_sees_no_controls_and_cannot_change_anything(orch: Orchestrator, tokens: dict[str, str],
                                                                  daemon: Daemons, page: Page,
                                                                  shots: Path) -> None:
    apply(orch, manifest("worker", SLEEPER), manifest("web", SLEEPER, namespace="shop"))
    orch.wait_running("worker", "web")
    page.goto(daemon.url + "/ui/")
    page.fill("#token", "orch_not-a-token")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).to_contain_text("not accepted")
    expect(page.locator("#app")).to_be_hidden()

    log_in(page, daemon, tokens["read"], "read")
    expect(row(page, "default/worker")).to_have_attribute("data-state", "Running")
    expect(row(page, "shop/web")).to_have_attribute("data-state", "Running")
    for selector in ("button.restart", "button.scale", "#rollback", "th.actions", "td.actions"):
        assert page.locator(selector).count() == 0, selector
    assert page.evaluate("() => sessionStorage.getItem('orchestrator.token')") == tokens["read"]
    status = page.evaluate("""async () => {
        const token = sessionStorage.getItem("orchestrator.token");
        const response = await fetch("/api/v1/restart", {method: "POST", body: JSON.stringify({name: "worker"}),
            headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}});
        return response.status;
    }""")
    assert status == 403
    page.screenshot(path=str(shots / "dashboard-read-only.png"), full_page=True)
    # Logging out forgets the token.
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('orchestrator.token')") is None


def test_the_page_reconnects_when_the_daemon_comes_back(orch: Orchestrator, tokens: dict[str, str],
                                                        daemon: Daemons, page: Page, shots: Path) -> None:
    ticker = "import time\nwhile True: print(f'tick {time.time_ns()}', flush=True); time.sleep(0.2)"
    apply(orch, manifest("worker", SLEEPER), manifest("ticker", [PY, "-c", ticker]))
    orch.wait_running("worker", "ticker")
    log_in(page, daemon, tokens["admin"], "admin")
    expect(row(page, "default/worker")).to_have_attribute("data-state", "Running")
    newest = int(page.locator("#events li").first.get_attribute("data-id") or 0)
    row(page, "default/ticker").locator("td.name").click()
    lines = page.locator("#log div.line")
    expect(lines.nth(2)).to_be_visible(timeout=5000)

    daemon.stop()
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "lost", timeout=10_000)
    expect(connection).to_contain_text("daemon unreachable")
    page.screenshot(path=str(shots / "dashboard-lost.png"), full_page=True)

    daemon.start()  # the same state dir and address
    expect(connection).to_have_attribute("data-state", "connected", timeout=15_000)
    expect(row(page, "default/worker")).to_have_attribute("data-state", "Running", timeout=10_000)
    # The event stream is back too: the new daemon's start of the worker is listed.
    expect(page.locator("#events li").filter(has_text="Started").first).to_be_visible()
    restarted = page.locator("#events li").evaluate_all(
        "(items, newest) => items.filter(li => Number(li.dataset.id) > newest && li.dataset.type === 'Started').length",
        newest)
    assert restarted >= 1
    # ... and live: a new event shows up.
    orch.api("POST", "/restart", {"name": "worker"})
    expect(page.locator("#events li").filter(has_text="restart requested")).to_have_count(1)
    # The log resumed where it stopped (Last-Event-ID), not with a new tail: no line twice, new ones coming.
    before = lines.count()
    expect(lines.nth(before + 3)).to_be_visible(timeout=5000)
    texts = lines.all_inner_texts()
    assert len(texts) == len(set(texts)), "lines shown twice: the log stream did not resume where it stopped"


def test_admin_buttons_restart_scale_and_roll_back(orch: Orchestrator, tokens: dict[str, str], daemon: Daemons,
                                                   page: Page) -> None:
    apply(orch, manifest("worker", SLEEPER))
    apply(orch, manifest("worker", SLEEPER), manifest("extra", SLEEPER))  # revision 2
    pid = orch.wait_running("worker", "extra")["worker"]
    log_in(page, daemon, tokens["admin"], "admin")
    worker = row(page, "default/worker")
    expect(worker).to_have_attribute("data-state", "Running")

    worker.locator("button.restart").click()
    orch.wait_running("worker", replacing={"worker": pid}, timeout=10)
    expect(page.locator("#events li").filter(has_text="restart requested").first).to_be_visible()
    expect(worker).to_have_attribute("data-state", "Running")

    # Rollback asks first, then goes to the revision before the current one (a new revision: 3).
    expect(page.locator("#revision")).to_contain_text("revision 2")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("#rollback")
    expect(page.locator("#revision")).to_contain_text("revision 3", timeout=10_000)
    assert asked and "revision 1" in asked[0]
    latest = orch.revisions()[0]
    assert latest["action"] == "rollback" and latest["number"] == 3, latest
    expect(row(page, "default/extra")).to_have_count(0, timeout=10_000)  # revision 1 had no extra

    worker.locator("input.replicas").fill("2")
    worker.locator("button.scale").click()
    expect(worker.locator("td.ready")).to_have_text("2/2", timeout=10_000)
    assert len(orch.wait_running("worker")["worker"]) == 2
    # A refusal is shown with the daemon's message.
    worker.locator("input.replicas").fill("100000")
    worker.locator("button.scale").click()
    expect(page.locator("#message.error")).to_contain_text("replicas must be a whole number")
