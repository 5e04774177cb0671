"""A web page on another origin uploads to Stratum in headless Chromium (Debian's chromium
and chromium-driver, driven by selenium): an HTML form signed by boto3's
generate_presigned_post, and a ``fetch`` PUT to a presigned URL, which makes the browser
send a CORS preflight first and read the answer's headers as the bucket's rules allow."""

from __future__ import annotations

import html
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.browser import need_chromium, new_browser, wait_for
from tests.server.conftest import RunningServer


class _Pages(http.server.BaseHTTPRequestHandler):
    """The other origin: serves the page it was given, and ``/done`` for the redirect."""

    page = b""

    def do_GET(self) -> None:
        body = self.page if self.path == "/" else b"<html><body>done</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[tuple[str, type[_Pages]]]:
    pages = type("Pages", (_Pages,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", pages
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    need_chromium()
    driver = new_browser(tmp_path / "profile", tmp_path / "downloads")
    yield driver
    driver.quit()


def form_page(url: str, fields: dict[str, str]) -> bytes:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        f'<html><body><form id="up" method="post" action="{html.escape(url)}" '
        f'enctype="multipart/form-data">{inputs}<input type="file" name="file" id="file">'
        f'<input type="submit" id="send"></form></body></html>'
    ).encode()


def test_browser_form_upload_and_cors_preflight(
    server: RunningServer,
    s3: Any,
    bucket: str,
    origin: tuple[str, type[_Pages]],
    chromium: Any,
    tmp_path: Path,
) -> None:
    page_origin, pages = origin
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [page_origin],
                    "AllowedMethods": ["PUT", "POST"],
                    "AllowedHeaders": ["content-type", "x-amz-meta-*"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 60,
                }
            ]
        },
    )
    # 1. A plain HTML form, as a photo site would serve it, signed for this bucket.
    done = f"{page_origin}/done"
    form = server.client(signature_version="s3v4").generate_presigned_post(
        bucket,
        "photos/${filename}",
        Fields={"success_action_redirect": done},
        Conditions=[
            ["starts-with", "$key", "photos/"],
            {"success_action_redirect": done},
            ["content-length-range", 1, 1 << 20],
        ],
        ExpiresIn=600,
    )
    pages.page = form_page(form["url"], form["fields"])
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(b"\xff\xd8not really a jpeg" * 100)
    chromium.get(page_origin + "/")
    chromium.find_element("id", "file").send_keys(str(photo))
    chromium.find_element("id", "send").click()
    landed = wait_for(lambda: chromium.current_url.startswith(done) and chromium.current_url)
    assert f"bucket={bucket}" in landed and "key=photos%2Fholiday.jpg" in landed
    got = s3.get_object(Bucket=bucket, Key="photos/holiday.jpg")["Body"].read()
    assert got == photo.read_bytes()

    # 2. fetch() PUT from the page: a cross-origin PUT with a custom header is preflighted.
    put_url = s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": bucket,
            "Key": "notes/from-js.txt",
            "ContentType": "text/plain",
            "Metadata": {"from": "page"},
        },
    )
    chromium.get(page_origin + "/")
    etag = chromium.execute_async_script(
        """
        const [url, done] = arguments;
        fetch(url, {method: "PUT", body: "written by a page",
                    headers: {"Content-Type": "text/plain", "x-amz-meta-from": "page"}})
          .then(r => done(r.status + " " + r.headers.get("ETag")))
          .catch(e => done("failed: " + e));
        """,
        put_url,
    )
    assert etag.startswith('200 "'), etag
    head = s3.head_object(Bucket=bucket, Key="notes/from-js.txt")
    assert etag == f"200 {head['ETag']}"
    assert head["Metadata"] == {"from": "page"}
    # 3. A header the rules do not allow: the browser's preflight is refused, so it never
    # sends the PUT, and nothing is written.
    refused = chromium.execute_async_script(
        """
        const [url, done] = arguments;
        fetch(url, {method: "PUT", body: "x", headers: {"x-custom": "1"}})
          .then(r => done("answered " + r.status)).catch(e => done("blocked"));
        """,
        s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "blocked"}),
    )
    assert refused == "blocked"
    assert s3.list_objects_v2(Bucket=bucket, Prefix="blocked")["KeyCount"] == 0
