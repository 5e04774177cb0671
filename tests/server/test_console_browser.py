"""The web console in a real browser (headless Chromium) against a real server.

Log in, upload 50 MiB from the page, see it listed, open its explanation, download it byte
for byte, share it and fetch the link anonymously with curl, delete it; a wrong secret key is
refused; a request without the CSRF token changes nothing; a user who is not root cannot open
another user's bucket or the users page; an object's versions and Object Lock state are shown
and an older version downloads.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratum.tiering.pricing import DEFAULT_PRICES
from tests.server.browser import (
    log_in,
    need_chromium,
    new_browser,
    screenshot,
    start_console_server,
    wait_for,
)
from tests.server.conftest import ACCESS_KEY, SECRET_KEY, RunningServer

MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    need_chromium()
    srv = start_console_server(tmp_path_factory.mktemp("console"))
    yield srv
    assert srv.stop() == 0, "".join(srv.output[-40:])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    need_chromium()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = new_browser(tmp_path / "profile", downloads)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def by_id(driver: Any, ident: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, ident)


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def session_cookie(driver: Any) -> str:
    return "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())


def post(url: str, fields: dict[str, str], cookie: str) -> int:
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_wrong_secret_key_is_refused(browser: Any, server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    log_in(browser, console, ACCESS_KEY, SECRET_KEY + "x")
    # the click returns before the answer's page is there: wait for it, not the old one
    error = wait_for(lambda: by_id(browser, "login-error").text, what="the login error")
    assert "Wrong access key or secret key" in error
    assert browser.current_url.endswith("/login")
    browser.get(f"{console}/buckets")
    assert browser.current_url.endswith("/login")  # no session was made
    screenshot(browser, "login")


def test_upload_list_explain_download_share_delete(
    browser: Any, server: RunningServer, tmp_path: Path
) -> None:
    console = server.console  # type: ignore[attr-defined]
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: "/overview" in browser.current_url or "/buckets" in browser.current_url)
    browser.get(f"{console}/buckets")
    by_id(browser, "new-bucket").send_keys("photos")
    by_id(browser, "new-bucket").submit()
    wait_for(lambda: browser.current_url.endswith("/b/photos"), what="the new bucket's page")

    data = os.urandom(50 * MiB)
    source = tmp_path / "holiday video.bin"
    source.write_bytes(data)
    by_id(browser, "upload-file").send_keys(str(source))
    by_id(browser, "upload-start").click()
    wait_for(
        lambda: "holiday video.bin" in by_id(browser, "objects").text,
        timeout=120,
        what="the uploaded file in the listing",
    )
    assert "50.0 MiB" in by_id(browser, "objects").text
    head = server.client().head_object(Bucket="photos", Key="holiday video.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-4"')  # 16 MiB parts: a multipart upload of 4 parts
    screenshot(browser, "listing")

    from selenium.webdriver.common.by import By

    browser.find_element(By.LINK_TEXT, "holiday video.bin").click()
    wait_for(lambda: "/object?key=" in browser.current_url)
    explain = by_id(browser, "explain").text
    assert "hot" in explain and "new object: written to the hot tier" in explain
    screenshot(browser, "object")

    by_id(browser, "download").click()
    target = browser.downloads / "holiday video.bin"
    wait_for(
        lambda: target.exists() and target.stat().st_size == len(data),
        timeout=120,
        what="the download",
    )
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()

    by_id(browser, "share").click()
    link = wait_for(lambda: by_id(browser, "share-link").get_attribute("value"), what="a link")
    fetched = tmp_path / "fetched.bin"
    subprocess.run(["curl", "-sSf", "-o", str(fetched), link], check=True, timeout=120)
    assert fetched.read_bytes() == data
    screenshot(browser, "share")

    by_id(browser, "delete").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "/b/photos" in browser.current_url and "/object" not in browser.current_url)
    assert "holiday video.bin" not in by_id(browser, "objects").text
    listed = server.client().list_objects_v2(Bucket="photos")
    assert listed["KeyCount"] == 0


def test_a_request_without_the_csrf_token_is_refused(browser: Any, server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    s3 = server.client()
    s3.create_bucket(Bucket="keepme")
    s3.put_object(Bucket="keepme", Key="precious.txt", Body=b"still here")
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: "/login" not in browser.current_url)
    cookie = session_cookie(browser)
    delete = f"{console}/b/keepme/delete"
    assert post(delete, {"key": "precious.txt"}, cookie) == 403
    assert post(delete, {"key": "precious.txt", "csrf": "forged"}, cookie) == 403
    assert s3.get_object(Bucket="keepme", Key="precious.txt")["Body"].read() == b"still here"
    # the same request with the page's token goes through: the refusal was the token's
    browser.get(f"{console}/b/keepme/object?key=precious.txt")
    from selenium.webdriver.common.by import By

    token = browser.find_element(By.NAME, "csrf").get_attribute("value")
    assert post(delete, {"key": "precious.txt", "csrf": token}, cookie) == 200  # -> listing
    assert s3.list_objects_v2(Bucket="keepme")["KeyCount"] == 0
    s3.delete_bucket(Bucket="keepme")


def test_a_user_sees_only_their_own(browser: Any, server: RunningServer) -> None:
    console = server.console  # type: ignore[attr-defined]
    s3 = server.client()
    s3.create_bucket(Bucket="roots-private")
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: "/login" not in browser.current_url)
    browser.get(f"{console}/users")
    by_id(browser, "user-access-key").send_keys("alice")
    by_id(browser, "user-name").send_keys("Alice")
    by_id(browser, "user-add").click()
    secret = wait_for(lambda: by_id(browser, "shown-secret").get_attribute("value"))
    screenshot(browser, "users")
    browser.delete_all_cookies()

    log_in(browser, console, "alice", secret)
    wait_for(lambda: browser.current_url.endswith("/buckets"), what="alice's buckets")
    assert "roots-private" not in page_text(browser)
    browser.get(f"{console}/b/roots-private")
    assert "AccessDenied" in page_text(browser)
    browser.get(f"{console}/b/roots-private/object?key=anything")
    assert "AccessDenied" in page_text(browser) or "Forbidden" in page_text(browser)
    for page in ("users", "overview", "tiers"):
        browser.get(f"{console}/{page}")
        assert "root user only" in page_text(browser), page
    s3.delete_bucket(Bucket="roots-private")


def test_operator_pages(browser: Any, server: RunningServer) -> None:
    """Overview, the buckets' totals, tiers (with a move made, the monthly cost and the what-if
    replayed), replication."""
    console = server.console  # type: ignore[attr-defined]
    s3 = server.client()
    s3.create_bucket(Bucket="archive")
    for n in range(20):
        s3.put_object(Bucket="archive", Key=f"2025/scan-{n:02}.pdf", Body=os.urandom(300_000))
    for n in range(5):
        s3.get_object(Bucket="archive", Key=f"2025/scan-{n:02}.pdf")["Body"].read()
    last_access = time.monotonic()
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: browser.current_url.endswith("/overview"))
    browser.get(f"{console}/tiers")
    # Every object must have been idle for the configured second when the pass looks at it,
    # or the ones read last stay hot and no later pass (interval 1h) moves them.
    time.sleep(max(0.0, last_access + 1.5 - time.monotonic()))
    by_id(browser, "run-pass").click()

    def overview_counted() -> bool:
        browser.get(f"{console}/overview")
        warm = by_id(browser, "tiers").text.partition("Warm")[2]
        return "20 objects" in warm

    wait_for(overview_counted, timeout=60, what="the census to count the moved objects")
    assert "Healthy" in by_id(browser, "health").text
    assert "online" in by_id(browser, "disks").text
    screenshot(browser, "overview")
    screenshot(browser, "overview-phone", width=390)

    browser.get(f"{console}/buckets")  # each bucket's objects and bytes as the census counted
    archive = by_id(browser, "buckets").text.partition("archive")[2].splitlines()[0]
    assert archive.split()[-3:] == ["20", "5.7", "MiB"], archive  # 20 x 300,000 bytes
    screenshot(browser, "buckets")

    browser.get(f"{console}/tiers")
    assert "hot → warm" in by_id(browser, "decisions").text
    assert "idle" in by_id(browser, "decisions").text
    wait_for(lambda: "hot->warm" in _reload_text(browser, "moves"), what="moves per day")
    by_id(browser, "whatif").click()
    result = wait_for(lambda: by_id(browser, "whatif-result").text, what="the what-if")
    assert "Reads served from hot" in result and "Cost per month" in result
    # the monthly cost of what each tier holds, at the configured (here default) prices
    costs = by_id(browser, "costs").text
    for tier in ("hot", "warm"):
        assert f"{tier} {DEFAULT_PRICES.storage[tier]} EUR" in costs, costs
    assert "0.00 EUR" in costs  # 6 MB of scans: less than a cent
    screenshot(browser, "tiers")

    browser.get(f"{console}/replication")
    assert "No replication targets" in by_id(browser, "replication").text


def _reload_text(browser: Any, ident: str) -> str:
    browser.refresh()
    return str(by_id(browser, ident).text)


def test_versions_and_lock_state(browser: Any, server: RunningServer) -> None:
    """Last in the module: its locked bucket stays until its retention is bypassed."""
    console = server.console  # type: ignore[attr-defined]
    s3 = server.client()
    s3.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}
    s3.put_object_lock_configuration(
        Bucket="vault", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    first, second = b"first draft\n", b"second draft\n"
    old = s3.put_object(Bucket="vault", Key="notes.txt", Body=first)["VersionId"]
    new = s3.put_object(Bucket="vault", Key="notes.txt", Body=second)["VersionId"]
    s3.put_object_legal_hold(
        Bucket="vault", Key="notes.txt", VersionId=new, LegalHold={"Status": "ON"}
    )
    log_in(browser, console, ACCESS_KEY, SECRET_KEY)
    wait_for(lambda: "/login" not in browser.current_url)
    browser.get(f"{console}/b/vault/object?key=notes.txt")
    lock = by_id(browser, "object-lock").text
    assert (
        "Enabled, default GOVERNANCE for 1 day(s)" in lock
        and "this version: GOVERNANCE until" in lock
    )
    assert "legal hold" in lock
    rows = by_id(browser, "versions").text
    assert f"{new} (current)" in rows and old in rows and f"{old} (current)" not in rows
    screenshot(browser, "object-versions")

    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#versions a[href*='version={old}']").click()
    target = browser.downloads / "notes.txt"
    wait_for(lambda: target.exists() and target.read_bytes() == first, what="the old version")

    s3.put_object_legal_hold(
        Bucket="vault", Key="notes.txt", VersionId=new, LegalHold={"Status": "OFF"}
    )
    for version in (old, new):
        s3.delete_object(
            Bucket="vault", Key="notes.txt", VersionId=version, BypassGovernanceRetention=True
        )
    s3.delete_bucket(Bucket="vault")
