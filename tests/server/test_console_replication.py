"""The console's replication page in a real browser: two sites replicating to each other,
the page of one shows its target, what waits and what was sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.browser import (
    console_url,
    log_in,
    need_chromium,
    new_browser,
    screenshot,
    wait_for,
)
from tests.server.conftest import ACCESS_KEY, SECRET_KEY
from tests.server.replication_sites import Site, two_sites, versioned_bucket
from tests.server.replication_sites import wait_for as eventually


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    need_chromium()
    a, b = two_sites(tmp_path)
    # site a serves its console (on a free port), b none
    a.config.write_text(
        a.config.read_text().replace('[console]\nlisten = ""', '[console]\nlisten = "127.0.0.1:0"')
    )
    a.start()
    b.start()
    yield a, b
    for site in (a, b):
        assert site.server is not None
        assert site.server.stop() == 0, "".join(site.server.output[-50:])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = new_browser(tmp_path / "profile", tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_replication_page_shows_each_target(sites: tuple[Site, Site], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    a, b = sites
    assert a.server is not None
    console = console_url(a.server)
    s3a = a.client()
    versioned_bucket("shared", s3a, b.client())
    for n in range(3):
        s3a.put_object(Bucket="shared", Key=f"k{n}", Body=b"x" * 1000)
    eventually(lambda: b.client().head_object(Bucket="shared", Key="k2")["ContentLength"] == 1000)
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: "/login" not in browser.current_url)

    def shown() -> str:
        browser.get(f"{console}/replication")
        text = str(browser.find_element(By.ID, "replication").text)
        return text if "3 (2.9 KiB)" in text else ""  # three versions of 1,000 bytes

    text = wait_for(shown, what="three versions sent")
    assert "b" in text and f"127.0.0.1:{b.port}" in text
    assert "0 (0 B)" in text  # nothing waits
    screenshot(browser, "replication")
