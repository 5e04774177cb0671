"""Headless Chromium for the console's browser tests (Debian's ``chromium`` and
``chromium-driver``), driven by selenium; and a server with its console on a free port.

Screenshots of the pages go to ``docs/console/`` only when ``STRATUM_CONSOLE_SCREENSHOTS=1``
asks for them, so ordinary runs leave the tree clean.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import RunningServer, start_server

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "console"
CHROMEDRIVER = "/usr/bin/chromedriver"
CONSOLE_LINE = re.compile(r"web console at (https?://\S+)")


def console_url(server: RunningServer, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.output):
            found = CONSOLE_LINE.search(line)
            if found:
                return found.group(1)
        time.sleep(0.05)
    raise AssertionError("no console line in the server's output:\n" + "".join(server.output))


def start_console_server(base: Path, server_table: str = "") -> RunningServer:
    """A server whose console listens on a free loopback port (``server.console``), with a
    warm tier, a history sample every second, and tiering that moves what was not read for a
    second (when a test runs a pass: ``stratum tier run``); ``server_table``: a ``[server]``
    table to add."""
    config = base / "stratum.toml"
    config.write_text(
        f"""{server_table}
[storage]
data_dir = "{base / "data"}"

[tiers.warm]
disks = ["{base / "warm1"}", "{base / "warm2"}"]

[tiering]
interval = "1h"
hot_idle_before_warm = "1s"
# The disks are the host's, whose fill level is not the test's: no watermark moves.
hot_high_watermark = 1.0
hot_low_watermark = 0.99
warm_high_watermark = 1.0
warm_low_watermark = 0.99

[console]
listen = "127.0.0.1:0"
history_interval = "1s"
"""
    )
    server = start_server(base / "data", config=config)
    server.console = console_url(server)  # type: ignore[attr-defined]
    server.config = config  # type: ignore[attr-defined]
    return server


def need_chromium() -> None:
    if not (shutil.which("chromium") and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (./dev setup installs them)")


def new_browser(profile: Path, downloads: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    options.binary_location = shutil.which("chromium") or "chromium"
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(60)
    return driver


def screenshot(driver: Any, name: str, *, width: int = 1200) -> None:
    """``docs/console/<name>.png`` of the whole page at ``width`` CSS pixels (a phone's when
    narrow), when STRATUM_CONSOLE_SCREENSHOTS=1."""
    if os.environ.get("STRATUM_CONSOLE_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    mobile = width < 600

    def emulate(height: int) -> None:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    emulate(800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    emulate(min(int(height), 4000))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    (SHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def wait_for(condition: Any, timeout: float = 30, what: str = "") -> Any:
    """``condition()``'s first true value; a page that is reloading (an element not there
    yet, or gone with the old page) counts as not yet."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        except WebDriverException as exc:
            # Chromium's own words for an element whose page was replaced while it was read
            if "does not belong to the document" not in str(exc):
                raise
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def log_in(driver: Any, console: str, access_key: str, secret_key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{console}/login")
    driver.find_element(By.ID, "access_key").send_keys(access_key)
    driver.find_element(By.ID, "secret_key").send_keys(secret_key)
    driver.find_element(By.ID, "login").click()
