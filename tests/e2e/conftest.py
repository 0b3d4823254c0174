"""Browser tests: the real app under uvicorn on 127.0.0.1, driven by Debian's Chromium through Playwright.

One seeded trust (SQLite) and one browser serve the whole session; each test opens its own
browser contexts (separate cookie jars: the public, Alice, Bob, a trustee). Chromium is never
downloaded: ``/usr/bin/chromium`` comes from Debian's ``chromium`` package (``.ci/run`` installs
it), and axe-core comes from the npm registry (``npm ci --prefix tests/e2e``). Without either,
the tests skip -- or fail under ``DATATRUST_REQUIRE_SYSTEM=1``.

:class:`PageChecker` is what every page goes through: its title, axe-core (no serious or
critical violation), no horizontal scrolling at 360 px, no Content-Security-Policy violation,
and a full-page screenshot at 1280 px and at 360 px in ``tests/artifacts/``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.instance import Instance, initialise
from tests.conftest import skip_or_fail
from tests.pages.support import World, seed_world

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TRUST_NAME = "Riverside Community Data Trust"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = (1280, 360)
SERIOUS = ("serious", "critical")
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " + (n.failureSummary || "")),
  }));
}"""


@dataclass
class LiveTrust:
    """The running app: its address, the trust behind it and what was seeded."""

    base_url: str
    instance: Instance
    world: World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_trust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveTrust]:
    """The seeded demo trust served by uvicorn on 127.0.0.1, in a thread of this process."""
    import uvicorn  # noqa: PLC0415 - only the browser tests serve over a socket

    instance = initialise(
        tmp_path_factory.mktemp("e2e") / "trust",
        name=TRUST_NAME,
        mission="Help Riverside's charities, council and researchers learn what works for local people, "
        "without anyone losing control of their own data.",
        clock=lambda: datetime.now(UTC),
    )
    world = seed_world(instance)
    port = _free_port()
    config = uvicorn.Config(
        create_app(instance), host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            instance.close()
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveTrust(f"http://127.0.0.1:{port}", instance, world)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        instance.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The axe-core script from the npm registry (``npm ci --prefix tests/e2e``)."""
    if not AXE.exists():
        skip_or_fail(f"{AXE} is missing: run `npm ci --prefix tests/e2e`")
    return AXE.read_text()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the session (Playwright never downloads a browser here)."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only browser tests need it

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageChecker:
    """Checks each page it is given and keeps a record of what it saw."""

    axe_source: str
    checked: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> Any:
        """Record Content-Security-Policy violations reported on *page*'s console; return the page."""

        def on_console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                self.csp_errors.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        return page

    def check(self, page: Any, name: str, *, title: str | None = None) -> None:
        """Title, axe-core, 360 px layout, CSP, and screenshots at both widths for the page shown now."""
        page.wait_for_load_state("load")
        shown = page.title()
        assert shown.endswith(TRUST_NAME), f"{name}: title {shown!r} does not name the trust"
        if title is not None:
            assert title in shown, f"{name}: title {shown!r} lacks {title!r}"
        if not page.evaluate("() => typeof axe !== 'undefined'"):
            page.evaluate(self.axe_source)
        ARTIFACTS.mkdir(exist_ok=True)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            violations = page.evaluate(RUN_AXE)
            serious = [v for v in violations if v["impact"] in SERIOUS]
            assert serious == [], f"{name} at {width} px: {json.dumps(serious, indent=1)}"
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width} px scrolls sideways by {overflow} px"
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": WIDTHS[0], "height": 900})
        assert self.csp_errors == [], self.csp_errors
        self.checked.append(name)


@pytest.fixture(scope="session")
def checker(axe_source: str) -> PageChecker:
    """The page checker shared by every browser test."""
    return PageChecker(axe_source)


@pytest.fixture
def new_page(browser: Any, live_trust: LiveTrust, checker: PageChecker) -> Iterator[Any]:
    """A factory of pages, each in a fresh browser context (its own cookies), closed after the test."""
    contexts: list[Any] = []

    def make() -> Any:
        context = browser.new_context(
            base_url=live_trust.base_url, viewport={"width": WIDTHS[0], "height": 900}, locale="en-GB"
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return checker.watch(context.new_page())

    yield make
    for context in contexts:
        context.close()
