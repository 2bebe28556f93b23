"""Downloading and unpacking one large archive so that a failure costs nothing already saved.

* **Resumable**: bytes go to ``DEST.part``; a broken transfer keeps them, and the next try asks only for the rest
  with an HTTP ``Range`` request. A server that ignores ``Range`` (answers 200, not 206) restarts the file from
  byte 0 instead of appending a second copy. ``DEST`` appears only once every announced byte has arrived.
* **No hang**: every connect and every read has a timeout, so being offline or a stalled server is an error in
  seconds, not a frozen terminal.
* **Safe unpacking**: a member that would land outside the target (absolute path, ``..``), a link of any kind or a
  device file is refused before it is written; tarfile's ``data`` filter checks the rest.

Every failure is a :class:`~visionlab.errors.DatasetError` whose one line names the URL or the file.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from visionlab.errors import DatasetError
from visionlab.progress import progress

__all__ = ["DEFAULT_TIMEOUT", "download", "safe_extract", "sha256_file", "verify_sha256"]

DEFAULT_TIMEOUT = 30.0  # seconds for the connection and for each read: a stalled transfer fails, it never hangs
BLOCK = 1 << 20  # bytes per read: one progress step is one MiB
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)|bytes\s+\*/(\d+)")


class _TransferCut(Exception):
    """The connection failed after the response began; ``received`` bytes of it were written."""

    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason)
        self.reason, self.received = reason, received


def _log(msg: str) -> None:
    print(f"[visionlab] {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`DatasetError` naming ``path``, the expected and the actual SHA-256 when they differ (checked
    before anything is unpacked, hence the message's promise)."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise DatasetError(
            f"{path}: checksum mismatch (sha256 {actual}, expected {expected.lower()}); nothing was unpacked, "
            "the file is kept: delete it to download it again"
        )


def download(url: str, dest: Path, *, timeout: float = DEFAULT_TIMEOUT, attempts: int = 5, show: bool = True) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming what an earlier try left there; return ``dest``.

    A transfer that breaks off after some bytes arrived is resumed at once, up to ``attempts`` tries in all; one
    that brings nothing (offline, refused, a stalled server) fails at once, keeping ``dest.part`` for next time.
    The size is checked against the server's ``Content-Length`` / ``Content-Range`` when it sends one.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        start = part.stat().st_size if part.is_file() else 0
        try:
            if _transfer(url, part, start, timeout, show):
                os.replace(part, dest)
                return dest
        except _TransferCut as cut:
            kept = part.stat().st_size if part.is_file() else 0
            if cut.received == 0 or attempt == attempts:
                raise DatasetError(
                    f"{url}: the transfer broke off ({cut.reason}); {part} keeps {kept} bytes and the next fetch "
                    "resumes from there"
                ) from None
            _log(f"{url}: the transfer broke off ({cut.reason}); resuming at byte {kept}")
    raise DatasetError(f"{url}: no complete transfer into {part} after {attempts} tries")


def _transfer(url: str, part: Path, start: int, timeout: float, show: bool) -> bool:
    """One request for the bytes of ``url`` from ``start`` on, appended to ``part``. True when ``part`` is then
    complete; False when it had to be discarded and the download should start over."""
    try:
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and start:  # the range starts at or past the end: complete already, or stale
            if _range_total(exc.headers.get("Content-Range", "")) == start:
                return True
            _log(f"{part}: longer than {url} ({start} bytes): starting over")
            part.unlink()
            return False
        raise DatasetError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DatasetError(f"{url}: cannot download ({reason}); check the address and the network") from None
    with response:
        if response.status == 206:
            content_range = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not (content_range and content_range[1] and int(content_range[1]) == start):
                _log(f"{url}: the server sent another range than bytes {start}-: starting over")
                part.unlink(missing_ok=True)
                return False
            offset, total, mode = start, _range_total(content_range[0]), "ab"
        else:  # a whole file (200): the server ignored the range, or there was none
            if start:
                _log(f"{url}: the server ignores range requests: starting over")
            length = response.headers.get("Content-Length")
            offset, total, mode = 0, int(length) if length and length.isdigit() else None, "wb"
        blocks = _Blocks(response, None if total is None else total - offset)
        bar = progress(blocks, desc=f"{part.name[: -len('.part')]} (MiB)", enabled=show)
        try:
            with open(part, mode) as f:
                for block in bar:
                    f.write(block)
        finally:
            bar.close()
    size = offset + blocks.received
    if total is not None and size != total:
        raise _TransferCut(f"{size} of {total} bytes arrived", blocks.received)
    return True


def _range_total(content_range: str) -> int | None:
    """The complete length in ``Content-Range: bytes 0-99/1234`` or ``bytes */1234``; None when unknown."""
    match = _CONTENT_RANGE.match(content_range)
    total = match and (match[3] or match[4])
    return int(total) if total and total != "*" else None


class _Blocks:
    """The response body in blocks of :data:`BLOCK` bytes, counting what arrived; a failed read becomes
    :class:`_TransferCut`. Sized when the remaining length is known, so the progress display shows a total."""

    def __init__(self, response: http.client.HTTPResponse, remaining: int | None) -> None:
        self.response, self.remaining, self.received = response, remaining, 0

    def __len__(self) -> int:
        if self.remaining is None:
            raise TypeError("length unknown")  # what progress() expects of an unsized iterable
        return math.ceil(self.remaining / BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                block = self.response.read(BLOCK)
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, incomplete chunk
                raise _TransferCut(f"{exc.__class__.__name__}: {exc}", self.received) from None
            if not block:
                return
            self.received += len(block)
            yield block


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack the tar archive (plain, gzip, bzip2 or xz) ``archive`` into the directory ``dest``.

    Members that would escape ``dest`` (absolute paths, ``..``), links (a dataset has no use for them, and a link
    is the classic way out of the target) and special files are refused with a :class:`DatasetError` naming the
    archive and the member. ``dest`` should be a fresh staging directory: a refusal midway leaves there what was
    unpacked before it.
    """

    def check(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        why = _refusal(member)
        if why:
            raise DatasetError(f"{archive}: member {member.name!r} {why}: refused")
        return tarfile.data_filter(member, path)

    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: checked as each member is unpacked
                tar.extractall(dest, filter=check)
            else:  # older: check every member first (one more pass over the archive)
                members = tar.getmembers()
                for member in members:
                    if why := _refusal(member):
                        raise DatasetError(f"{archive}: member {member.name!r} {why}: refused")
                tar.extractall(dest, members)
    except getattr(tarfile, "FilterError", ()) as exc:  # what the data filter refuses beyond _refusal's list
        raise DatasetError(f"{archive}: member refused ({exc})") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{archive}: not a readable tar archive ({exc})") from None


def _refusal(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be unpacked, or None."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or re.match(r"[A-Za-z]:", member.name):
        return "is an absolute path"
    if ".." in name.parts:
        return "climbs out with '..'"
    if member.issym() or member.islnk():
        return "is a link"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder"
    return None
