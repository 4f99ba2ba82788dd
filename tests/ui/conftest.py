"""The browser tests run only when asked for by path (`make test-ui`: `pytest tests/ui`).

`make test` and a bare `pytest` leave them out: they need a browser and take minutes. Fixtures:
`make run`'s launcher on free ports with its own state, and a headless Chromium page.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from batch_assets.project import PROJECT_ROOT
from tests.dagster_dev import dev_environment
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.services import free_port
from tests.ui.dagster_ui import DagsterUI

if TYPE_CHECKING:  # imported by the fixtures, so that `make test` does not load Playwright
    from playwright.sync_api import Browser, Page, Playwright

UI_TESTS = Path(__file__).resolve().parent
# Debian's `chromium` package, which `.ci/run` installs; else the one `playwright install
# chromium` downloads.
SYSTEM_CHROMIUM = Path("/usr/bin/chromium")
UI_READY_SECONDS = 180


def _asked_for(config: pytest.Config) -> bool:
    """Whether the command line names tests/ui or something in it."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False  # the testpaths of pyproject.toml: a plain `pytest`
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == UI_TESTS or UI_TESTS in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave this folder's tests out of any run that does not name it."""
    if collection_path.name.startswith("test_") and not _asked_for(config):
        return True
    return None


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[DagsterUI]:
    """`make run`'s launcher (`python -m batch_assets.launcher`), everything it writes in tmp_path.

    The launcher starts the local Batch API itself only when no key is set, with its state in the
    project; here the test starts one with its state in tmp_path and hands the launcher its URL
    as `OPENAI_BASE_URL`, so the test can slow its batches through `/admin/settings`.
    """
    api = LocalBatchAPI(tmp_path / "api-state").start()
    port = free_port()
    env = dev_environment(tmp_path, api)
    log_path = tmp_path / "launcher.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_assets.launcher", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: dagster dev and its children with it
    )
    ui = DagsterUI(f"http://127.0.0.1:{port}", api, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the launcher exited with {process.returncode}:\n{ui.log_tail()}")
        try:
            with urllib.request.urlopen(f"{ui.url}/server_info", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(ready, timeout=UI_READY_SECONDS, interval=0.5)
        yield ui
    finally:
        # SIGTERM to the group, as the smoke test stops `dagster dev`; SIGINT may be ignored by a
        # process started in the background.
        with contextlib.suppress(ProcessLookupError):  # the group may have ended already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
            # The launcher exits at once; give dagster dev's children the same minute.
            wait_for(lambda: not _group_alive(process.pid), timeout=60, interval=0.5)
        except (subprocess.TimeoutExpired, AssertionError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        api.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium: Debian's when installed, else Playwright's own download."""
    if SYSTEM_CHROMIUM.exists():
        launched = playwright_driver.chromium.launch(executable_path=SYSTEM_CHROMIUM, headless=True)
    else:
        try:
            launched = playwright_driver.chromium.launch(headless=True)
        except Exception as error:
            pytest.fail(
                f"No Chromium: install Debian's (`apt-get install chromium`, giving "
                f"{SYSTEM_CHROMIUM}) or Playwright's (`.venv/bin/playwright install chromium`).\n"
                f"{error}"
            )
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser page; its trace and a last screenshot are left in tmp_path."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    context.tracing.start(screenshots=True, snapshots=True)
    tab = context.new_page()
    # On 127.0.0.1 with a fresh DAGSTER_HOME the UI offers "Join the Dagster community" once,
    # a second after it loads; dismiss it as a user would, whenever it shows.
    tab.add_locator_handler(
        tab.get_by_text("Join the Dagster community"),
        lambda: tab.get_by_role("button", name="Skip").click(),
    )
    try:
        yield tab
    finally:
        try:
            tab.screenshot(path=tmp_path / "last.png", full_page=True)
        finally:
            context.tracing.stop(path=tmp_path / "trace.zip")
            context.close()
