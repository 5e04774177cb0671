"""A small AWS Signature V4 signer for the benchmark's own HTTP client (header form).

It signs exactly three headers (``host``, ``x-amz-content-sha256``, ``x-amz-date``), so a
request costs one SHA-256 of a short canonical request and one HMAC with the signing key,
which is derived once per day and kept. The payload hash is the caller's: the benchmark
computes it before the clock starts (see ``bench.loadgen.Body``), and the server still
hashes every body it receives and compares.

``selftest()`` checks the signature against botocore's signer for a few requests; the
benchmark runs it at startup, so a wrong signature is caught before any server sees one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
SIGNED_HEADERS = "host;x-amz-content-sha256;x-amz-date"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def uri_path(bucket: str, key: str = "") -> str:
    """The path-style request path, encoded as S3 signs it (``/`` kept, the rest RFC 3986)."""
    return quote(f"/{bucket}/{key}" if key else f"/{bucket}", safe="/~")


class Signer:
    def __init__(self, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        self.access_key = access_key
        self.secret = ("AWS4" + secret_key).encode()
        self.region = region
        self._second = -1
        self._amz_date = ""
        self._day = ""
        self._key = b""
        self._scope = ""

    def _clock(self, now: float | None) -> None:
        second = int(time.time() if now is None else now)
        if second == self._second:
            return
        self._second = second
        self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        day = self._amz_date[:8]
        if day != self._day:
            key = hmac.digest(self.secret, day.encode(), "sha256")
            for part in (self.region, "s3", "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._day, self._key = day, key
            self._scope = f"{day}/{self.region}/s3/aws4_request"

    def headers(
        self,
        method: str,
        host: str,
        path: str,
        payload_sha256: str,
        query: str = "",
        now: float | None = None,
    ) -> str:
        """The signed header lines (``Name: value\\r\\n`` each) for one request.

        ``path`` is already encoded (``uri_path``); ``query`` already canonical (sorted,
        encoded, ``k=v`` joined with ``&``)."""
        self._clock(now)
        amz_date = self._amz_date
        canonical = (
            f"{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload_sha256}\n"
            f"x-amz-date:{amz_date}\n\n{SIGNED_HEADERS}\n{payload_sha256}"
        )
        to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{self._scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(self._key, to_sign.encode(), "sha256").hexdigest()
        return (
            f"Host: {host}\r\nx-amz-date: {amz_date}\r\nx-amz-content-sha256: {payload_sha256}\r\n"
            f"Authorization: {ALGORITHM} Credential={self.access_key}/{self._scope}, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}\r\n"
        )


def _botocore_authorization(
    signer: Signer, method: str, host: str, path: str, payload: str, now: float
) -> str:
    """botocore's Authorization header for the same request and moment."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    secret = signer.secret.decode()[4:]
    auth = S3SigV4Auth(Credentials(signer.access_key, secret), "s3", signer.region)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(now)))
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=b"")
    request.headers["X-Amz-Date"] = amz_date
    request.headers["X-Amz-Content-SHA256"] = payload
    request.context["timestamp"] = amz_date
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    return (
        f"{ALGORITHM} Credential={signer.access_key}/{amz_date[:8]}/{signer.region}/s3/"
        f"aws4_request, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"
    )


def selftest() -> None:
    """Raise AssertionError unless this signer agrees with botocore's."""
    signer = Signer("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    body = hashlib.sha256(b"x" * 4096).hexdigest()
    for now in (1_700_000_000.5, 1_700_086_401.0):  # two days: the cached key is renewed
        for method, path, payload in (
            ("PUT", uri_path("bench", "4k-c16/00000001"), body),
            ("GET", uri_path("bench", "odd key/ü+%=~.txt"), EMPTY_SHA256),
            ("PUT", uri_path("bench-list", "d0001/o0002"), EMPTY_SHA256),
        ):
            ours = signer.headers(method, "127.0.0.1:9000", path, payload, now=now)
            auth = next(h for h in ours.split("\r\n") if h.startswith("Authorization: "))
            want = _botocore_authorization(signer, method, "127.0.0.1:9000", path, payload, now)
            if auth.removeprefix("Authorization: ") != want:
                raise AssertionError(f"SigV4 differs from botocore for {method} {path}")


if __name__ == "__main__":
    selftest()
    print("bench.signer agrees with botocore")
