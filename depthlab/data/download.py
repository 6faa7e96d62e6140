"""Checksummed downloads: the first mirror that answers, bounded in size, verified before the
file is moved into place."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError

# The largest download held in memory (the CIFAR-10 archive is 170 MB): a mirror cannot make
# us read more than this.
MAX_DOWNLOAD_BYTES = 256 * 2**20


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def download(
    urls: list[str],
    dest: Path,
    *,
    md5: str | None = None,
    md5_of_content: Callable[[bytes], str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the first URL that answers into ``dest``, verifying the checksum before the file
    is moved into place (a failed or corrupted download never leaves a file behind)."""
    last_error = "no mirror given"
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read(MAX_DOWNLOAD_BYTES + 1)
        except Exception as exc:  # any network failure: try the next mirror
            last_error = f"{url}: {exc}"
            continue
        if len(payload) > MAX_DOWNLOAD_BYTES:
            last_error = f"{url}: more than {MAX_DOWNLOAD_BYTES:,} bytes (not a dataset file)"
            continue
        check = md5_of_content(payload) if md5_of_content else md5_of(payload)
        if md5 is not None and check != md5:
            last_error = f"{url}: checksum mismatch"
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest
    raise DataError(f"could not download {dest.name}: {last_error}")


def _gunzip_if_needed(payload: bytes, limit: int | None = None) -> bytes:
    """``payload`` decompressed if it is gzip; with ``limit``, at most ``limit + 1`` bytes are
    ever decompressed (a downloaded gzip bomb is cut off, and then fails its checksum)."""
    if payload[:2] != b"\x1f\x8b":
        return payload
    if limit is None:
        return gzip.decompress(payload)
    with gzip.GzipFile(fileobj=io.BytesIO(payload), mode="rb") as fh:
        return fh.read(limit + 1)
