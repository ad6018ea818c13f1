"""Headless Chromium from Debian packages, driven by Selenium, for the browser tests.

``make test`` installs ``chromium`` and ``chromium-driver`` when they are missing
(scripts/install_chromium.sh). The driver is given explicitly, so Selenium never looks
for (or downloads) a browser of its own. axe-core comes from npm (tests/browser/package.json
and its lock file, installed by make) and is injected by the tests: the page never
loads it.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_SCRIPT = REPO_ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOT_DIR = REPO_ROOT / ".cache" / "screenshots"

# Flags that keep a headless Chromium in a container quiet and offline: no background
# traffic, no component updates, no QUIC, a fresh profile per driver.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Nothing but the gateway on 127.0.0.1 is reachable: any other host name fails fast.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def missing_tools() -> list[str]:
    """What a browser test needs and this machine lacks (make installs all of it)."""
    wanted = {
        str(CHROMIUM): CHROMIUM.exists(),
        str(CHROMEDRIVER): CHROMEDRIVER.exists(),
        str(AXE_SCRIPT): AXE_SCRIPT.exists(),
    }
    return [name for name, present in wanted.items() if not present]


@contextmanager
def chromium(width: int, height: int, *, touch: bool = False) -> Iterator[webdriver.Chrome]:
    """A headless Chromium whose viewport is ``width`` x ``height`` CSS pixels.

    ``touch`` emulates a phone: touch events and a coarse pointer. The browser's console
    and network log are kept for ``console_errors`` and ``failed_requests``.
    """
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": touch},
        )
        if touch:
            driver.execute_cdp_cmd(
                "Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5}
            )
        driver.execute_cdp_cmd("Network.enable", {})
        driver.get("about:blank")
        # The browser's own start-up page is not the gateway's: drop its log entries.
        driver.get_log("performance")
        driver.get_log("browser")
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The whole page (not only the viewport) as .cache/screenshots/<name>.png."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console errors and uncaught exceptions since the last call.

    Chromium also logs every 4xx/5xx answer as a console error (source "network"):
    those are judged by ``failed_requests``, which knows which ones the page asked for.
    """
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]


def failed_requests(driver: webdriver.Chrome) -> list[str]:
    """Requests since the last call that failed or got an error status (DevTools log).

    A 4xx answer to an upload or feedback the page sent on purpose (a blank drawing, a
    file over the size limit) is the API answering, not a failure: those are left out,
    and the tests check what the page says about them.
    """
    failures, urls = [], {}
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        method = message.get("method")
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = (params["request"]["method"], params["request"]["url"])
        elif method == "Network.responseReceived":
            status, url = params["response"]["status"], params["response"]["url"]
            request_method = urls.get(params["requestId"], ("GET", url))[0]
            deliberate = request_method == "POST" and 400 <= status < 500
            if status >= 400 and not deliberate:
                failures.append(f"{status} {request_method} {url}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            request_method, url = urls.get(params["requestId"], ("?", "?"))
            failures.append(f"{params.get('errorText')} {request_method} {url}")
    return failures


def horizontal_overflow(driver: webdriver.Chrome) -> int:
    """How many CSS pixels the page is wider than its viewport (0: no sideways scrolling)."""
    return driver.execute_script(
        "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth;"
    )


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's violations for the page as it is now (all rules of the default run)."""
    if not driver.execute_script("return typeof window.axe !== 'undefined';"):
        driver.execute_script(AXE_SCRIPT.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then((r) => done(r.violations), (e) => done([{id: 'axe-error',"
        " help: String(e), nodes: []}]));"
    )
    return [
        {
            "id": v["id"],
            "help": v["help"],
            "targets": [node["target"] for node in v["nodes"]][:5],
        }
        for v in result
    ]
