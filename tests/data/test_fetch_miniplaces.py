"""MiniPlaces fetching against a loopback HTTP server (127.0.0.1, a free port) serving a generated archive of a
few tiny JPEGs: a full fetch that loads, resuming a broken transfer with a Range request, a server that ignores
Range, checksum errors that unpack nothing, offline and HTTP errors, refused archive members, and the command
line. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionlab.cli import main
from visionlab.data import DatasetError, fetch_miniplaces, load_dataset
from visionlab.data import fetch as fetch_module
from visionlab.data.fetch import _miniplaces_archive
from visionlab.errors import ConfigError

from .conftest import MINIPLACES_FIXTURE_CLASSES


# --------------------------------------------------------------------------------------------- the archive
def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _lists() -> dict[str, bytes]:
    """train.txt (2 images per fixture class), val.txt (3 images), categories.txt: the development kit's format."""
    train = [f"train/{cls}/{k:08d}.jpg {label}" for cls, label in MINIPLACES_FIXTURE_CLASSES for k in (1, 2)]
    val = ["val/00000001.jpg 7", "val/00000002.jpg 0", "val/00000003.jpg 1"]
    categories = [f"/{cls} {label}" for cls, label in MINIPLACES_FIXTURE_CLASSES]
    return {name: ("\n".join(lines) + "\n").encode() for name, lines in
            (("train.txt", train), ("val.txt", val), ("categories.txt", categories))}  # fmt: skip


def _files(top: str, with_lists: bool) -> dict[str, bytes]:
    """Archive members: ``top/images/{train,val,test}/...``, ``top/objects/`` (as MIT's archive has), lists."""
    files = {}
    for cls, label in MINIPLACES_FIXTURE_CLASSES:
        for k in (1, 2):
            files[f"{top}images/train/{cls}/{k:08d}.jpg"] = _jpeg(10 * label + k)
    for k in (1, 2, 3):
        files[f"{top}images/val/{k:08d}.jpg"] = _jpeg(100 + k)
        files[f"{top}images/test/{k:08d}.jpg"] = _jpeg(200 + k)
    files[f"{top}objects/train/a/abbey/00000001.xml"] = b"<annotation/>"
    if with_lists:
        files.update({top + name: data for name, data in _lists().items()})
    return files


def make_archive(top: str = "miniplaces/", with_lists: bool = True, extra: Sequence[tarfile.TarInfo] = ()) -> bytes:
    """A gzipped tar of :func:`_files`, then the ``extra`` members (file members carry ``b"evil"``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in _files(top, with_lists).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            if info.isfile():
                info.size = 4
            tar.addfile(info, io.BytesIO(b"evil") if info.isfile() else None)
    return buffer.getvalue()


ARCHIVE = make_archive()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()


# --------------------------------------------------------------------------------------------- the server
@dataclass
class Served:
    """What the loopback server serves (path -> bytes), how it misbehaves, and the requests it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    cuts: dict[str, int] = field(default_factory=dict)  # path -> how many GETs send half the body, then hang up
    ignore_range: bool = False  # answer 200 with the whole file whatever the Range header says
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        served: Served = self.server.served  # type: ignore[attr-defined]
        wanted = self.headers.get("Range")
        served.requests.append((self.path, wanted))
        body = served.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and not served.ignore_range else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if served.cuts.get(self.path):  # announce everything, send half, close (HTTP/1.0: one request each)
            served.cuts[self.path] -= 1
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[Served]:
    served = Served(files={"/data.tar.gz": ARCHIVE})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.served = served  # type: ignore[attr-defined]
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _fetch(root: Path, served: Served, **kwargs: object) -> Path:
    defaults = {"url": served.url("/data.tar.gz"), "sha256": SHA256, "devkit_url": served.url("/devkit/")}
    return fetch_miniplaces(root, **{"timeout": 5, "show_progress": False, **defaults, **kwargs})  # type: ignore[arg-type]


def _leftovers(root: Path) -> list[str]:
    """Staging folders and partial downloads under ``root``."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".fetch") or p.name.endswith(".part"))


# --------------------------------------------------------------------------------------------- fetching
def test_fetch_unpacks_into_the_layout_the_loader_reads_then_is_idempotent(tmp_path: Path, server: Served) -> None:
    target = _fetch(tmp_path / "root", server)
    assert target == tmp_path / "root" / "miniplaces"
    assert sorted(p.name for p in target.iterdir()) == [
        "categories.txt", "fetched.json", "images", "objects", "train.txt", "val.txt",
    ]  # fmt: skip
    assert json.loads((target / "fetched.json").read_text()) == {
        "url": server.url("/data.tar.gz"), "bytes": len(ARCHIVE), "sha256": SHA256,
    }  # fmt: skip
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["miniplaces"]  # archive and staging removed
    bundle = load_dataset(f"miniplaces:{target}", image_size=16)
    assert (bundle.kind, len(bundle.train), len(bundle.val), len(bundle.test)) == ("miniplaces", 6, 3, 3)
    assert [bundle.class_names[i] for i in (0, 1, 7)] == ["abbey", "bakery", "canyon"]
    assert bundle.val.entries[0].label == 7 and bundle.val.entries[0].path == target / "images/val/00000001.jpg"
    assert server.requests == [("/data.tar.gz", None)]
    assert _fetch(tmp_path / "root", server) == target and len(server.requests) == 1  # fetched: no request


def test_mit_layout_gets_the_development_kit_lists(tmp_path: Path, server: Served) -> None:
    """MIT's data.tar.gz holds images/ and objects/ at its top and no list files: they come from the kit."""
    archive = make_archive(top="", with_lists=False)
    server.files = {"/data.tar.gz": archive, **{f"/devkit/{n}": data for n, data in _lists().items()}}
    target = _fetch(tmp_path, server, sha256=hashlib.sha256(archive).hexdigest())
    assert [path for path, _ in server.requests] == [
        "/data.tar.gz", "/devkit/train.txt", "/devkit/val.txt", "/devkit/categories.txt",
    ]  # fmt: skip
    assert (target / "train.txt").read_bytes() == _lists()["train.txt"]
    bundle = load_dataset(f"miniplaces:{target}", image_size=16)
    assert (len(bundle.train), len(bundle.val), bundle.class_names[7]) == (6, 3, "canyon")


def test_lists_that_do_not_match_the_images_are_an_error(tmp_path: Path, server: Served) -> None:
    archive = make_archive(top="", with_lists=False)
    lists = _lists()
    lists["val.txt"] += b"val/00000009.jpg 3\n"  # no such image in the archive
    server.files = {"/data.tar.gz": archive, **{f"/devkit/{n}": data for n, data in lists.items()}}
    with pytest.raises(DatasetError, match=r"lists do not match its images .*val.txt:4: image .* does not exist"):
        _fetch(tmp_path, server, sha256=None)
    assert not (tmp_path / "miniplaces").exists() and _leftovers(tmp_path) == []


def test_an_interrupted_transfer_resumes_with_a_range_request(
    tmp_path: Path, server: Served, capsys: pytest.CaptureFixture
) -> None:
    server.cuts = {"/data.tar.gz": 1}
    target = _fetch(tmp_path, server, show_progress=True)
    half = len(ARCHIVE) // 2
    assert server.requests == [("/data.tar.gz", None), ("/data.tar.gz", f"bytes={half}-")]
    err = capsys.readouterr().err  # not a terminal: a line per attempt (one block each) rather than a bar
    assert f"{half} of {len(ARCHIVE)} bytes arrived); resuming at byte {half}" in err
    assert err.count("-data.tar.gz (MiB): 1/1 (100%)") == 2
    assert json.loads((target / "fetched.json").read_text())["sha256"] == SHA256  # the whole archive verified
    assert len(load_dataset(f"miniplaces:{target}", image_size=16).train) == 6


def test_a_server_ignoring_range_restarts_the_file_cleanly(tmp_path: Path, server: Served) -> None:
    server.cuts, server.ignore_range = {"/data.tar.gz": 1}, True
    target = _fetch(tmp_path, server)  # the second answer is the whole file again (200): not appended
    assert server.requests == [("/data.tar.gz", None), ("/data.tar.gz", f"bytes={len(ARCHIVE) // 2}-")]
    assert json.loads((target / "fetched.json").read_text())["bytes"] == len(ARCHIVE)


def test_a_transfer_that_keeps_breaking_gives_up_keeping_the_part(tmp_path: Path, server: Served) -> None:
    server.cuts = {"/data.tar.gz": 5}  # each try brings half of what is left: 5 tries, then a clear error
    with pytest.raises(DatasetError, match=r"the transfer broke off \(\d+ of \d+ bytes arrived\); .*\.part keeps"):
        _fetch(tmp_path, server)
    assert len(server.requests) == 5 and not (tmp_path / "miniplaces").exists()
    archive = _miniplaces_archive(tmp_path, server.url("/data.tar.gz"))
    kept = archive.with_name(archive.name + ".part").read_bytes()
    assert 0 < len(kept) < len(ARCHIVE) and ARCHIVE.startswith(kept)
    _fetch(tmp_path, server)  # the next fetch asks for the rest only
    assert server.requests[5:] == [("/data.tar.gz", f"bytes={len(kept)}-")]


@pytest.mark.parametrize(("kept", "requests"), [(ARCHIVE, 1), (ARCHIVE + b"stale tail", 2)])
def test_a_complete_or_stale_partial_file(tmp_path: Path, server: Served, kept: bytes, requests: int) -> None:
    """A .part as long as the archive is complete (the server answers 416: nothing left to send); one longer than
    the archive is stale and the download starts over."""
    archive = _miniplaces_archive(tmp_path, server.url("/data.tar.gz"))
    archive.with_name(archive.name + ".part").write_bytes(kept)
    _fetch(tmp_path, server)
    assert server.requests[0] == ("/data.tar.gz", f"bytes={len(kept)}-") and len(server.requests) == requests


def test_a_corrupt_byte_is_a_checksum_error_that_unpacks_nothing(tmp_path: Path, server: Served) -> None:
    target = _fetch(tmp_path, server)
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    corrupt = bytearray(ARCHIVE)
    corrupt[len(corrupt) // 2] ^= 0x01
    server.files["/data.tar.gz"] = bytes(corrupt)
    with pytest.raises(DatasetError) as info:
        _fetch(tmp_path, server, force=True)
    archive = _miniplaces_archive(tmp_path, server.url("/data.tar.gz"))
    actual = hashlib.sha256(corrupt).hexdigest()
    assert str(info.value).startswith(f"{archive}: checksum mismatch (sha256 {actual}, expected {SHA256})")
    assert "\n" not in str(info.value) and archive.read_bytes() == corrupt  # kept: the message says so
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before  # the earlier copy untouched
    assert len(load_dataset(f"miniplaces:{target}", image_size=16).train) == 6 and _leftovers(tmp_path) == []


def test_offline_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.tar.gz"
    with pytest.raises(DatasetError) as info:
        fetch_miniplaces(tmp_path, url=url, timeout=5, show_progress=False)
    assert str(info.value).startswith(f"{url}: cannot download (") and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not a tar archive at all", "not a readable tar archive"),
     (make_archive(top="data/nested/"), "no images/ folder at the top of the archive")],
)  # fmt: skip
def test_an_archive_that_is_not_miniplaces_is_an_error(
    tmp_path: Path, server: Served, body: bytes, message: str
) -> None:
    server.files["/data.tar.gz"] = body
    with pytest.raises(DatasetError, match=message) as info:
        _fetch(tmp_path, server, sha256=None)
    assert str(info.value).startswith(str(_miniplaces_archive(tmp_path, server.url("/data.tar.gz"))))
    assert not (tmp_path / "miniplaces").exists() and _leftovers(tmp_path) == []


def test_an_http_error_names_the_url_and_status(tmp_path: Path, server: Served) -> None:
    with pytest.raises(DatasetError, match=r"/missing.tar.gz: the server answered HTTP 404"):
        _fetch(tmp_path, server, url=server.url("/missing.tar.gz"))
    assert not (tmp_path / "miniplaces").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["data-filter", "pre-check"])
@pytest.mark.parametrize(
    ("kind", "why"),
    [("dotdot", "climbs out with '..'"), ("absolute", "is an absolute path"), ("symlink", "is a link"),
     ("hardlink", "is a link"), ("fifo", "is not a regular file or folder")],
)  # fmt: skip
def test_a_member_escaping_the_target_is_refused(
    tmp_path: Path, server: Served, monkeypatch: pytest.MonkeyPatch, kind: str, why: str, with_data_filter: bool
) -> None:
    root, escape = tmp_path / "root", tmp_path / "escape.txt"
    member = {
        "dotdot": _member("miniplaces/images/../../../escape.txt"),
        "absolute": _member(str(escape)),
        "symlink": _member("miniplaces/images/train/link", tarfile.SYMTYPE, str(tmp_path)),
        "hardlink": _member("miniplaces/images/train/hard", tarfile.LNKTYPE, "../../../escape.txt"),
        "fifo": _member("miniplaces/images/train/pipe", tarfile.FIFOTYPE),
    }[kind]
    server.files["/data.tar.gz"] = make_archive(extra=[member])
    if not with_data_filter:  # Python < 3.11.4: every member checked before anything is unpacked
        monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(DatasetError) as info:
        _fetch(root, server, sha256=None)
    archive = _miniplaces_archive(root, server.url("/data.tar.gz"))
    assert str(info.value) == f"{archive}: member {member.name!r} {why}: refused"
    assert not escape.exists() and not (root / "miniplaces").exists() and _leftovers(root) == []


def test_a_folder_visionlab_did_not_fetch_is_never_replaced(tmp_path: Path, server: Served) -> None:
    mine = tmp_path / "miniplaces" / "train.txt"
    mine.parent.mkdir()
    mine.write_text("my own list\n")
    with pytest.raises(DatasetError, match="did not put there"):
        _fetch(tmp_path, server)
    assert mine.read_text() == "my own list\n" and server.requests == []


def test_a_malformed_sha256_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="64 hexadecimal digits") as info:
        fetch_miniplaces(tmp_path, sha256="abc123")
    assert info.value.field == "sha256"


# Explicit ids: the archive (and so SHA256) is built anew in each process, and pytest-xdist's workers must collect
# the same test names.
@pytest.mark.parametrize(
    "sha256",
    [SHA256[:63], SHA256 + "0", SHA256[:63] + "g", " " + SHA256[:63], ""],
    ids=["63-digits", "65-digits", "non-hex", "leading-space", "empty"],
)
def test_a_sha256_one_digit_short_long_or_off_is_refused_before_any_request(tmp_path: Path, sha256: str) -> None:
    with pytest.raises(ConfigError) as info:
        fetch_miniplaces(tmp_path, sha256=sha256, url="http://127.0.0.1:9/never")
    assert str(info.value) == f"sha256: must be 64 hexadecimal digits (a SHA-256), got {sha256!r}"
    assert list(tmp_path.iterdir()) == []


def test_an_upper_case_sha256_into_an_empty_target_folder_is_fetched(tmp_path: Path, server: Served) -> None:
    (tmp_path / "miniplaces").mkdir()  # empty: nothing of the user's to lose
    target = _fetch(tmp_path, server, sha256=SHA256.upper())
    assert json.loads((target / "fetched.json").read_text())["sha256"] == SHA256
    assert _fetch(tmp_path, server, sha256=SHA256.upper()) == target and len(server.requests) == 1  # recognised


# --------------------------------------------------------------------------------------------- command line
def _cli(root: Path, server: Served, *extra: str) -> int:
    url = server.url("/data.tar.gz")
    return main(["data", "fetch", "miniplaces", "--root", str(root), "--url", url, "--no-progress", *extra])


def test_cli_fetches_and_prints_the_folder(tmp_path: Path, server: Served, capsys: pytest.CaptureFixture) -> None:
    assert _cli(tmp_path, server, "--sha256", SHA256.upper()) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'miniplaces'}\n"


def test_cli_bad_checksum_is_exit_2_and_one_line(tmp_path: Path, server: Served, capsys: pytest.CaptureFixture) -> None:
    assert _cli(tmp_path, server, "--sha256", "0" * 64) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("visionlab: error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err
    assert f"sha256 {SHA256}, expected {'0' * 64}" in errors[0]
    assert not (tmp_path / "miniplaces").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["miniplaces", "--sha256", "xyz"], "--sha256: must be 64 hexadecimal digits"),
     (["fashion-mnist", "--url", "http://127.0.0.1/x"], "--url: only for miniplaces")],
)  # fmt: skip
def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(["data", "fetch", *argv, "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"visionlab: error: {message}")


# --------------------------------------------------------------------------------------------- helpers, exactly
@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/x/data.tar.gz", "data.tar.gz"),
        ("http://h/dir/", "dir"),
        ("data.tgz", "data.tgz"),
        ("http://h/X", "X"),
        ("/", "archive"),
    ],
)
def test_archive_name_is_the_url_hash_and_its_last_part(tmp_path: Path, url: str, name: str) -> None:
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    assert _miniplaces_archive(tmp_path, url) == tmp_path / f"miniplaces-{digest}-{name}"


def test_layout_of_an_archive_that_unpacked_nothing(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    with pytest.raises(DatasetError) as info:
        fetch_module._miniplaces_layout(tmp_path / "unpacked", archive, "http://kit/", 5.0)
    assert str(info.value) == f"{archive}: no images/ folder at the top of the archive (expected images/train/...)"


class KitDownloads:
    """Stands in for ``download`` in the list-file step: records its arguments, serves the lists it has."""

    def __init__(self, lists: dict[str, bytes]) -> None:
        self.lists, self.calls = lists, []

    def __call__(self, url: str, dest: Path, *, timeout: float, show: bool) -> Path:
        self.calls.append((url, dest, timeout, show))
        name = url.rsplit("/", 1)[-1]
        if name not in self.lists:
            raise DatasetError(f"{url}: the server answered HTTP 404 Not Found")
        dest.write_bytes(self.lists[name])
        return dest


def test_missing_lists_come_from_the_kit_quietly_with_the_timeout(
    miniplaces: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    lists = {n: (miniplaces / n).read_bytes() for n in ("train.txt", "val.txt")}
    for name in ("train.txt", "val.txt", "categories.txt"):
        (miniplaces / name).unlink()
    kit = KitDownloads(lists)
    monkeypatch.setattr(fetch_module, "download", kit)
    assert fetch_module._miniplaces_layout(miniplaces.parent, Path("a.tar"), "http://kit/", 7.5) == miniplaces
    assert kit.calls == [
        (f"http://kit/{n}", miniplaces / n, 7.5, False) for n in ("train.txt", "val.txt", "categories.txt")
    ]
    assert capsys.readouterr().err == (
        "[visionlab] no categories.txt at http://kit/: class names will come from the train folders\n"
    )


def test_a_missing_train_list_the_kit_lacks_is_an_error(miniplaces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (miniplaces / "train.txt").unlink()
    monkeypatch.setattr(fetch_module, "download", KitDownloads({}))
    with pytest.raises(DatasetError) as info:
        fetch_module._miniplaces_layout(miniplaces.parent, Path("a.tar"), "http://kit/", 5.0)
    assert str(info.value) == "http://kit/train.txt: the server answered HTTP 404 Not Found"


def test_replace_dir_moves_the_old_folder_aside(tmp_path: Path) -> None:
    new, target, aside = tmp_path / "new", tmp_path / "target", tmp_path / "aside"
    for folder, text in ((new, "new"), (target, "old")):
        folder.mkdir()
        (folder / "f.txt").write_text(text)
    fetch_module._replace_dir(new, target, aside)
    assert (target / "f.txt").read_text() == "new" and (aside / "f.txt").read_text() == "old" and not new.exists()


def test_replace_dir_puts_the_old_folder_back_when_the_second_rename_fails(tmp_path: Path) -> None:
    target, aside = tmp_path / "target", tmp_path / "aside"
    target.mkdir()
    (target / "f.txt").write_text("old")
    with pytest.raises(FileNotFoundError):
        fetch_module._replace_dir(tmp_path / "missing", target, aside)
    assert (target / "f.txt").read_text() == "old" and not aside.exists()


def test_fetch_logs_each_step_and_passes_its_settings_down(
    tmp_path: Path, server: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A root whose parents do not exist yet, no SHA-256 (the actual one is logged), the download given the
    timeout and progress setting, unpacking staged in ``ROOT/.fetch-miniplaces-*``; then a second call logs that
    it is done; ``force`` deletes a stale ``.part`` first (no Range request)."""
    downloads, staged = [], []
    real_download, real_extract = fetch_module.download, fetch_module.safe_extract
    monkeypatch.setattr(fetch_module, "download", lambda *a, **k: downloads.append(k) or real_download(*a, **k))
    monkeypatch.setattr(fetch_module, "safe_extract", lambda a, d: staged.append(d) or real_extract(a, d))
    root, url = tmp_path / "a" / "b", server.url("/data.tar.gz")
    target = fetch_miniplaces(root, url=url, timeout=4.5, show_progress=False)
    archive = _miniplaces_archive(root, url)
    assert downloads == [{"timeout": 4.5, "show": False}]
    assert staged[0].name == "unpacked" and staged[0].parent.parent == root
    assert staged[0].parent.name.startswith(".fetch-miniplaces-")
    assert capsys.readouterr().err.splitlines() == [
        f"[visionlab] downloading {url} into {archive}",
        f"[visionlab] {archive}: {len(ARCHIVE)} bytes, sha256 {SHA256} (not verified: no SHA-256 given; give this "
        "one next time)",
        f"[visionlab] unpacking {archive}",
        f"[visionlab] MiniPlaces ready in {target}",
    ]
    assert json.loads((target / "fetched.json").read_text())["sha256"] == SHA256
    assert fetch_miniplaces(root, url=url) == target
    assert capsys.readouterr().err == f"[visionlab] MiniPlaces already fetched into {target}\n"
    archive.with_name(archive.name + ".part").write_bytes(b"stale")
    fetch_miniplaces(root, url=url, force=True)  # progress shown by default
    assert server.requests[-1] == ("/data.tar.gz", None)
    assert f"{archive.name} (MiB): 1/1 (100%)" in capsys.readouterr().err


def test_fetch_gives_its_timeout_to_the_list_downloads(
    tmp_path: Path, server: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(top="", with_lists=False)
    server.files = {"/data.tar.gz": archive, **{f"/devkit/{n}": data for n, data in _lists().items()}}
    timeouts = []
    real_download = fetch_module.download
    monkeypatch.setattr(
        fetch_module, "download", lambda *a, **k: timeouts.append(k["timeout"]) or real_download(*a, **k)
    )
    _fetch(tmp_path, server, sha256=hashlib.sha256(archive).hexdigest(), timeout=4.5)
    assert timeouts == [4.5] * 4  # the archive, then the three lists
