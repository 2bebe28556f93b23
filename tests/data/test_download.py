"""download() and safe_extract() value by value: ``urllib.request.urlopen`` is replaced by a scripted stand-in
(each call answers the next scripted response or raises the next scripted error), so every request's Range
header and timeout, every log line and every error message is compared whole. Nothing here touches the network."""

from __future__ import annotations

import email.message
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from visionlab.data import download as download_module
from visionlab.data.download import BLOCK, DEFAULT_TIMEOUT, download, safe_extract, verify_sha256
from visionlab.errors import DatasetError

URL = "http://example.invalid/data.bin"
BODY = bytes(range(256)) * 3  # 768 bytes


def _headers(**values: str) -> email.message.Message:
    headers = email.message.Message()
    for name, value in values.items():
        headers[name.replace("_", "-")] = value
    return headers


class Answer:
    """One scripted response: ``status``, headers, and ``body`` read in blocks; ``fail`` raised by the read after
    the body when given (a reset mid-transfer)."""

    def __init__(self, status: int, body: bytes, fail: Exception | None = None, **headers: str) -> None:
        self.status, self.headers, self.fail = status, _headers(**headers), fail
        self._body = io.BytesIO(body)

    def read(self, n: int) -> bytes:
        block = self._body.read(n)
        if not block and self.fail is not None:
            raise self.fail
        return block

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _http_error(code: int, reason: str, **headers: str) -> urllib.error.HTTPError:
    return urllib.error.HTTPError(URL, code, reason, _headers(**headers), io.BytesIO(b""))


class Opener:
    """Stands in for ``urllib.request.urlopen``: records ``(Range header, timeout)`` per call."""

    def __init__(self, *script: Answer | Exception) -> None:
        self.script, self.calls = list(script), []

    def __call__(self, request: urllib.request.Request, timeout: float) -> Answer:
        assert request.full_url == URL
        self.calls.append((request.get_header("Range"), timeout))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def opener(monkeypatch: pytest.MonkeyPatch):
    def install(*script: Answer | Exception) -> Opener:
        fake = Opener(*script)
        monkeypatch.setattr(download_module.urllib.request, "urlopen", fake)
        return fake

    return install


def _download(dest: Path, **kwargs: object) -> Path:
    return download(URL, dest, show=False, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- checksums
def test_verify_sha256_accepts_either_case_and_names_everything_on_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    actual = hashlib.sha256(b"abc").hexdigest()
    verify_sha256(path, actual.upper())
    wrong = "AB" * 32
    message = (
        f"{path}: checksum mismatch (sha256 {actual}, expected {wrong.lower()}); nothing was unpacked, "
        "the file is kept: delete it to download it again"
    )
    with pytest.raises(DatasetError) as info:
        verify_sha256(path, wrong)
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------- download
def test_a_whole_file_in_one_answer(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    fake = opener(Answer(200, BODY, Content_Length=str(len(BODY))))
    dest = tmp_path / "data.bin"
    assert _download(dest, timeout=7.5) == dest
    assert dest.read_bytes() == BODY and not (tmp_path / "data.bin.part").exists()
    assert fake.calls == [(None, 7.5)]  # no Range header for a fresh start
    assert capsys.readouterr().err == ""


def test_the_default_timeout_is_thirty_seconds(tmp_path: Path, opener) -> None:
    assert DEFAULT_TIMEOUT == 30.0 and BLOCK == 1 << 20
    fake = opener(Answer(200, BODY))  # no Content-Length: the size is not checked
    _download(tmp_path / "data.bin")
    assert fake.calls == [(None, 30.0)] and (tmp_path / "data.bin").read_bytes() == BODY


def test_a_broken_transfer_resumes_from_the_bytes_kept(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    fake = opener(
        Answer(200, BODY[:300], ConnectionResetError("reset"), Content_Length=str(len(BODY))),
        Answer(206, BODY[300:], Content_Range=f"bytes 300-{len(BODY) - 1}/{len(BODY)}"),
    )
    dest = _download(tmp_path / "data.bin")
    assert dest.read_bytes() == BODY
    assert fake.calls == [(None, 30.0), ("bytes=300-", 30.0)]
    assert capsys.readouterr().err == (
        f"[visionlab] {URL}: the transfer broke off (ConnectionResetError: reset); resuming at byte 300\n"
    )


def test_a_short_body_without_an_error_is_a_broken_transfer(tmp_path: Path, opener) -> None:
    fake = opener(
        Answer(200, BODY[:100], Content_Length=str(len(BODY))),
        Answer(206, BODY[100:], Content_Range=f"bytes 100-{len(BODY) - 1}/*"),  # total unknown: not checked
    )
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert fake.calls[1] == ("bytes=100-", 30.0)


def test_a_transfer_that_brings_nothing_fails_at_once_keeping_the_part(tmp_path: Path, opener) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(BODY[:10])
    fake = opener(Answer(206, b"", TimeoutError("timed out"), Content_Range=f"bytes 10-767/{len(BODY)}"))
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    assert str(info.value) == (
        f"{URL}: the transfer broke off (TimeoutError: timed out); {part} keeps 10 bytes and the next fetch "
        "resumes from there"
    )
    assert fake.calls == [("bytes=10-", 30.0)] and part.read_bytes() == BODY[:10]


def test_the_last_attempt_gives_up_with_what_the_part_keeps(tmp_path: Path, opener) -> None:
    total = str(len(BODY))
    fake = opener(
        Answer(200, BODY[:100], Content_Length=total),
        Answer(206, BODY[100:200], Content_Range=f"bytes 100-767/{total}"),
        Answer(206, BODY[200:300], Content_Range=f"bytes 200-767/{total}"),
    )
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin", attempts=3)
    part = tmp_path / "data.bin.part"
    assert str(info.value) == (
        f"{URL}: the transfer broke off (300 of 768 bytes arrived); {part} keeps 300 bytes and the next fetch "
        "resumes from there"
    )
    assert [rng for rng, _ in fake.calls] == [None, "bytes=100-", "bytes=200-"] and part.read_bytes() == BODY[:300]


def test_five_attempts_by_default(tmp_path: Path, opener) -> None:
    total = str(len(BODY))
    script = [Answer(200, BODY[:100], Content_Length=total)]
    script += [Answer(206, BODY[k : k + 100], Content_Range=f"bytes {k}-767/{total}") for k in (100, 200, 300, 400)]
    fake = opener(*script, Answer(206, BODY[500:], Content_Range=f"bytes 500-767/{total}"))
    with pytest.raises(DatasetError, match=r"\(500 of 768 bytes arrived\); .* keeps 500 bytes"):
        _download(tmp_path / "data.bin")
    assert len(fake.calls) == 5


def test_another_range_than_asked_starts_over(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(b"x" * 50)
    fake = opener(
        Answer(206, BODY[40:], Content_Range=f"bytes 40-767/{len(BODY)}"),
        Answer(200, BODY, Content_Length=str(len(BODY))),
    )
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == ["bytes=50-", None]
    assert (
        capsys.readouterr().err == f"[visionlab] {URL}: the server sent another range than bytes 50-: starting over\n"
    )


@pytest.mark.parametrize("content_range", ["", "bytes */768", "bytes 50-767"])
def test_a_partial_answer_without_a_usable_range_starts_over(tmp_path: Path, opener, content_range: str) -> None:
    (tmp_path / "data.bin.part").write_bytes(b"x" * 50)
    headers = {"Content_Range": content_range} if content_range else {}
    fake = opener(Answer(206, BODY[50:], **headers), Answer(200, BODY))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == ["bytes=50-", None]


def test_a_server_ignoring_the_range_rewrites_the_file(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "data.bin.part").write_bytes(b"x" * 50)
    fake = opener(Answer(200, BODY, Content_Length=str(len(BODY))))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert fake.calls == [("bytes=50-", 30.0)]
    assert capsys.readouterr().err == f"[visionlab] {URL}: the server ignores range requests: starting over\n"


@pytest.mark.parametrize("length", ["", "12x"])
def test_an_unreadable_length_is_not_checked(tmp_path: Path, opener, length: str) -> None:
    opener(Answer(200, BODY, Content_Length=length))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY


def test_a_complete_part_is_the_file(tmp_path: Path, opener) -> None:
    (tmp_path / "data.bin.part").write_bytes(BODY)
    fake = opener(_http_error(416, "Range Not Satisfiable", Content_Range=f"bytes */{len(BODY)}"))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert fake.calls == [(f"bytes={len(BODY)}-", 30.0)]


def test_a_part_longer_than_the_file_starts_over(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(BODY + b"tail")
    fake = opener(_http_error(416, "Range Not Satisfiable", Content_Range=f"bytes */{len(BODY)}"), Answer(200, BODY))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == [f"bytes={len(BODY) + 4}-", None]
    assert capsys.readouterr().err == f"[visionlab] {part}: longer than {URL} ({len(BODY) + 4} bytes): starting over\n"


def test_416_on_a_fresh_start_is_an_http_error(tmp_path: Path, opener) -> None:
    opener(_http_error(416, "Range Not Satisfiable", Content_Range="bytes */0"))
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    assert str(info.value) == f"{URL}: the server answered HTTP 416 Range Not Satisfiable"


def test_an_http_error_names_the_status(tmp_path: Path, opener) -> None:
    opener(_http_error(503, "Service Unavailable"))
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    assert str(info.value) == f"{URL}: the server answered HTTP 503 Service Unavailable"


@pytest.mark.parametrize(
    ("error", "reason"),
    [(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "[Errno 111] Connection refused"),
     (TimeoutError("timed out"), "timed out"),
     (ValueError("unknown url type: 'x'"), "unknown url type: 'x'")],
)  # fmt: skip
def test_no_connection_is_one_line_naming_the_reason(tmp_path: Path, opener, error: Exception, reason: str) -> None:
    opener(error)
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    assert str(info.value) == f"{URL}: cannot download ({reason}); check the address and the network"


def test_no_complete_transfer_after_the_attempts(tmp_path: Path, opener) -> None:
    """Every answer is a range other than the one asked for: each discards the part; after the attempts, an
    error naming the part and the count."""
    (tmp_path / "data.bin.part").write_bytes(b"x" * 50)
    opener(*[Answer(206, BODY[1:], Content_Range=f"bytes 1-767/{len(BODY)}") for _ in range(2)])
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin", attempts=2)
    assert str(info.value) == f"{URL}: no complete transfer into {tmp_path / 'data.bin.part'} after 2 tries"


# --------------------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    ("header", "total"),
    [("bytes 0-99/1234", 1234), ("bytes */1234", 1234), ("bytes 0-99/*", None), ("", None), ("items 0-1/2", None)],
)
def test_range_total(header: str, total: int | None) -> None:
    assert download_module._range_total(header) == total


@pytest.mark.parametrize(("remaining", "blocks"), [(0, 0), (1, 1), (BLOCK, 1), (BLOCK + 1, 2)])
def test_blocks_length_counts_whole_and_partial_blocks(remaining: int, blocks: int) -> None:
    assert len(download_module._Blocks(Answer(200, b""), remaining)) == blocks  # type: ignore[arg-type]


def test_blocks_of_unknown_length_have_no_len() -> None:
    with pytest.raises(TypeError, match=r"^length unknown$"):
        len(download_module._Blocks(Answer(200, b""), None))  # type: ignore[arg-type]


def test_blocks_are_read_a_mebibyte_at_a_time() -> None:
    body = bytes(BLOCK + 5)
    blocks = download_module._Blocks(Answer(200, body), len(body))  # type: ignore[arg-type]
    assert [len(b) for b in blocks] == [BLOCK, 5] and blocks.received == BLOCK + 5


# --------------------------------------------------------------------------------------------- safe_extract
def _tar(path: Path, *members: tuple[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_safe_extract_unpacks_files_and_folders(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", ("top/a.txt", b"A"), ("top/sub/b.txt", b"BB"))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out/top/a.txt").read_bytes() == b"A" and (tmp_path / "out/top/sub/b.txt").read_bytes() == b"BB"


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["data-filter", "pre-check"])
@pytest.mark.parametrize("name", ["C:evil.txt", "c:/evil.txt", "/evil.txt"])
def test_safe_extract_refuses_absolute_paths_windows_style_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, with_data_filter: bool
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", ("ok.txt", b"ok"), (name, b"evil"))
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(DatasetError) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value) == f"{archive}: member {name!r} is an absolute path: refused"


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["data-filter", "pre-check"])
def test_safe_extract_takes_names_that_only_look_like_an_escape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_data_filter: bool
) -> None:
    """The nearest names to the refused ones: '..' inside a name is no parent folder (a '..' part is refused even
    where it would stay inside), a colon past the first character is no drive letter."""
    names = ["top/..hidden.txt", "top/a..b/c.txt", "top/x:y.txt", "xy:z.txt"]
    archive = _tar(tmp_path / "a.tar.gz", *((name, name.encode()) for name in names))
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    safe_extract(archive, tmp_path / "out")
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == name.encode(), name


def test_safe_extract_without_data_filter_checks_before_unpacking_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", ("ok.txt", b"ok"), ("a/../../up.txt", b"evil"))
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(DatasetError) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value) == f"{archive}: member 'a/../../up.txt' climbs out with '..': refused"
    assert not (tmp_path / "out" / "ok.txt").exists()  # nothing unpacked before the check


def test_safe_extract_of_what_is_not_a_tar_archive(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar archive")
    with pytest.raises(DatasetError) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value) == f"{archive}: not a readable tar archive (file could not be opened successfully:\n" + (
        "- method gz: ReadError('not a gzip file')\n- method bz2: ReadError('not a bzip2 file')\n"
        "- method xz: ReadError('not an lzma file')\n- method tar: ReadError('truncated header'))"
    )


def test_safe_extract_without_data_filter_unpacks_every_member_into_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", ("top/a.txt", b"A"), ("top/sub/b.txt", b"BB"))
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.chdir((tmp_path / "cwd").mkdir() or tmp_path / "cwd")  # not where the files go
    safe_extract(archive, tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.txt")) == [
        "top/a.txt", "top/sub/b.txt",
    ]  # fmt: skip
    assert list((tmp_path / "cwd").iterdir()) == []


def test_safe_extract_applies_the_data_filter(tmp_path: Path) -> None:
    """Where tarfile has the ``data`` filter it is applied: a setuid, world-writable file loses both."""
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("run.sh")
        info.size, info.mode = 2, 0o4777
        tar.addfile(info, io.BytesIO(b"#!"))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "run.sh").stat().st_mode & 0o7777 == 0o755


def test_safe_extract_names_what_the_data_filter_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal of the data filter beyond safe_extract's own list (stood in for: the filter raises) is a
    DatasetError naming the archive and tarfile's reason."""

    def refuse(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        raise tarfile.OutsideDestinationError(member, path)

    archive = _tar(tmp_path / "a.tar.gz", ("a.txt", b"A"))
    monkeypatch.setattr(tarfile, "data_filter", refuse)
    with pytest.raises(DatasetError) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value) == f"{archive}: member refused ('a.txt' would be extracted to {tmp_path / 'out'!r}, " + (
        "which is outside the destination)"
    )


def test_progress_is_shown_by_default_in_mebibytes(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    """Not a terminal: one line at the end, named after the file (not the ``.part``), counting 1 MiB blocks."""
    opener(Answer(200, BODY, Content_Length=str(len(BODY))))
    download(URL, tmp_path / "data.bin")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("data.bin (MiB): 1/1 (100%)")


def test_an_http_error_while_resuming_keeps_the_part(tmp_path: Path, opener) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(BODY[:50])
    fake = opener(_http_error(503, "Service Unavailable"))
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    assert str(info.value) == f"{URL}: the server answered HTTP 503 Service Unavailable"
    assert fake.calls == [("bytes=50-", 30.0)] and part.read_bytes() == BODY[:50]


def test_416_without_a_length_starts_over(tmp_path: Path, opener, capsys: pytest.CaptureFixture) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(BODY[:50])
    fake = opener(_http_error(416, "Range Not Satisfiable"), Answer(200, BODY))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == ["bytes=50-", None]
    assert capsys.readouterr().err == f"[visionlab] {part}: longer than {URL} (50 bytes): starting over\n"


def test_a_break_after_one_byte_is_resumed(tmp_path: Path, opener) -> None:
    fake = opener(
        Answer(200, BODY[:1], ConnectionResetError("reset"), Content_Length=str(len(BODY))),
        Answer(206, BODY[1:], Content_Range=f"bytes 1-767/{len(BODY)}"),
    )
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == [None, "bytes=1-"]


def test_an_empty_body_short_of_its_length_fails_at_once(tmp_path: Path, opener) -> None:
    fake = opener(Answer(200, b"", Content_Length=str(len(BODY))))
    with pytest.raises(DatasetError) as info:
        _download(tmp_path / "data.bin")
    part = tmp_path / "data.bin.part"
    assert str(info.value) == (
        f"{URL}: the transfer broke off (0 of 768 bytes arrived); {part} keeps 0 bytes and the next fetch "
        "resumes from there"
    )
    assert len(fake.calls) == 1


def test_a_partial_answer_to_a_fresh_request_starts_over(tmp_path: Path, opener) -> None:
    """No ``.part`` yet and no Range asked for, but the server answers a range from byte 5: discarded (there is
    no part file to delete), then the whole file."""
    fake = opener(Answer(206, BODY[5:], Content_Range=f"bytes 5-767/{len(BODY)}"), Answer(200, BODY))
    assert _download(tmp_path / "data.bin").read_bytes() == BODY
    assert [rng for rng, _ in fake.calls] == [None, None]


def test_progress_of_a_resumed_transfer_counts_the_remaining_blocks(
    tmp_path: Path, opener, capsys: pytest.CaptureFixture
) -> None:
    """A file of 1 MiB + 10 bytes with 20 bytes kept: 1 MiB - 10 bytes remain, one block (not two)."""
    body = bytes(BLOCK + 10)
    (tmp_path / "data.bin.part").write_bytes(body[:20])
    opener(Answer(206, body[20:], Content_Range=f"bytes 20-{len(body) - 1}/{len(body)}"))
    download(URL, tmp_path / "data.bin")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("data.bin (MiB): 1/1 (100%)")
    assert (tmp_path / "data.bin").read_bytes() == body


def test_without_filter_support_a_broken_archive_is_still_a_dataset_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Python before 3.11.4 has neither ``tarfile.data_filter`` nor ``tarfile.FilterError``."""
    monkeypatch.delattr(tarfile, "data_filter")
    monkeypatch.delattr(tarfile, "FilterError")
    archive = tmp_path / "a.tar"
    archive.write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        safe_extract(archive, tmp_path / "out")
    assert str(info.value).startswith(f"{archive}: not a readable tar archive (")
