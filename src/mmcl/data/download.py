"""Downloading one file of a dataset: resumed, retried, verified, then moved into place.

Bytes go to ``<dest>.part``; an interrupted download resumes from there with an HTTP ``Range``
request (or starts over when the server ignores ranges). Network failures are retried with
exponential backoff; a missing file (HTTP 4xx) is not. ``<dest>`` appears only once its SHA-256
matches (or, with no SHA-256 to check, once every byte the server announced has arrived), so a file at
``<dest>`` is complete. Failures raise DataError saying what to do.
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from mmcl.core.io import sha256_file
from mmcl.data.records import DataError

RETRYABLE_STATUS = (408, 429, 500, 502, 503, 504)
RANGE_NOT_SATISFIABLE = 416  # asked to resume a part that already holds the whole file


def fetch(
    url: str, dest: str | Path, sha256: str | None, retries: int = 4, timeout: float = 30.0, backoff: float = 1.0
) -> Path:
    """Download ``url`` to ``dest`` unless a file with this SHA-256 is already there; return ``dest``.

    ``sha256`` None: nothing to verify against (the caller warns); a file already at ``dest`` is kept.
    """
    dest, sha256 = Path(dest), sha256 and sha256.lower()
    pinned = f" (SHA-256 {sha256})" if sha256 else ""
    by_hand = f"check the URL in params.yaml, or place the file at {dest} by hand{pinned}"
    if dest.exists():
        actual = sha256 and sha256_file(dest)
        if actual != sha256:
            raise DataError(f"{dest}: SHA-256 is {actual}, expected {sha256}; delete it to download {url} again")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download(url, part, timeout)
            break
        except HTTPError as err:
            if err.code == RANGE_NOT_SATISFIABLE:
                break
            if err.code not in RETRYABLE_STATUS:
                raise DataError(f"{url}: HTTP {err.code} {err.reason}; {by_hand}") from None
            failure = f"HTTP {err.code} {err.reason}"
        except (URLError, OSError, http.client.HTTPException) as err:  # refused, reset, timed out, cut short
            failure = str(getattr(err, "reason", err)) or type(err).__name__
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    else:
        raise DataError(
            f"{url}: download failed after {retries + 1} attempts ({failure}); check the network and {by_hand}"
        )
    actual = sha256 and sha256_file(part)
    if actual != sha256:
        part.unlink()
        raise DataError(
            f"{url}: downloaded file has SHA-256 {actual}, expected {sha256}; the partial file {part} was removed. "
            f"The file may have changed upstream: {by_hand}"
        )
    os.replace(part, dest)
    return dest


def _download(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part``; raise IncompleteRead when the connection ends early."""
    have = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urlopen(request, timeout=timeout) as response:
        if response.status != http.HTTPStatus.PARTIAL_CONTENT:  # the whole file: (re)start from zero
            have = 0
        expected = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if have else "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
                received += len(block)
    if expected is not None and received < int(expected):
        raise http.client.IncompleteRead(b"", int(expected) - received)
