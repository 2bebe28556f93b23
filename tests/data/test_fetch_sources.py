"""The two Fashion-MNIST sources themselves, value by value: the official download (``urlopen`` replaced by a
recording stand-in) and Debian's package (an installed copy, or ``apt-get download`` + ``dpkg-deb -x`` replaced by
a recording stand-in for ``subprocess.run``). Every request, command, keyword and log line is compared whole;
nothing here touches the network or apt."""

from __future__ import annotations

import io
import subprocess
import urllib.error
from pathlib import Path

import pytest

from visionlab.data import fetch as fetch_module

NAMES = list(fetch_module.FASHION_MNIST_FILES)
PACKAGE = "dataset-fashion-mnist"


def _payload(name: str) -> bytes:
    return f"payload of {name}\n".encode() * 3


class Urlopen:
    """Stands in for ``urllib.request.urlopen``: records ``(url, timeout)``; raises ``errors[url]`` if given."""

    def __init__(self, errors: dict[str, OSError] | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.errors = errors or {}

    def __call__(self, url: str, timeout: float) -> io.BytesIO:
        self.calls.append((url, timeout))
        if url in self.errors:
            raise self.errors[url]
        return io.BytesIO(_payload(url.rsplit("/", 1)[1]))


def test_official_download_fetches_every_file_from_the_first_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opener = Urlopen()
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", opener)
    monkeypatch.setattr(fetch_module, "_OFFICIAL_URLS", ("http://a.invalid/", "http://b.invalid/"))
    assert fetch_module._from_official(tmp_path, 7.5) is True
    assert opener.calls == [(f"http://a.invalid/{n}", 7.5) for n in NAMES]  # the second base is never asked
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {n: _payload(n) for n in NAMES}
    assert capsys.readouterr().err == ""


def test_official_download_falls_back_to_the_next_base_and_logs_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = f"http://a.invalid/{NAMES[1]}"
    opener = Urlopen({failing: urllib.error.URLError("no route")})
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", opener)
    monkeypatch.setattr(fetch_module, "_OFFICIAL_URLS", ("http://a.invalid/", "http://b.invalid/"))
    assert fetch_module._from_official(tmp_path, 3.0) is True
    assert opener.calls == [(f"http://a.invalid/{n}", 3.0) for n in NAMES[:2]] + [
        (f"http://b.invalid/{n}", 3.0) for n in NAMES
    ]
    assert capsys.readouterr().err == (
        "[visionlab] official download from http://a.invalid/ failed (URLError: <urlopen error no route>)\n"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {n: _payload(n) for n in NAMES}


def test_official_download_reports_failure_when_every_base_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opener = Urlopen({f"http://a.invalid/{NAMES[0]}": TimeoutError("timed out")})
    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", opener)
    monkeypatch.setattr(fetch_module, "_OFFICIAL_URLS", ("http://a.invalid/",))
    assert fetch_module._from_official(tmp_path, 5.0) is False
    assert capsys.readouterr().err == (
        "[visionlab] official download from http://a.invalid/ failed (TimeoutError: timed out)\n"
    )


def test_debian_copies_an_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed, staging = tmp_path / "installed", tmp_path / "staging"
    installed.mkdir()
    staging.mkdir()
    for name in NAMES:
        (installed / name).write_bytes(_payload(name))
    monkeypatch.setattr(fetch_module, "_DEBIAN_DIR", installed.relative_to("/"))  # relative to /, as the real one
    monkeypatch.setattr(fetch_module.shutil, "which", lambda tool: pytest.fail("an installed copy needs no apt"))
    assert fetch_module._from_debian(staging) is True
    assert {p.name: p.read_bytes() for p in staging.iterdir()} == {n: _payload(n) for n in NAMES}


class Apt:
    """Stands in for ``subprocess.run``: ``apt-get download`` leaves ``debs`` in its ``cwd`` and answers
    ``returncode``/``stdout``/``stderr``; ``dpkg-deb -x DEB DEST`` unpacks every payload under ``DEST/<dir>``.
    Records ``(command, keywords)``."""

    def __init__(self, directory: Path, debs: tuple[str, ...] = (f"{PACKAGE}_1.0_all.deb",), returncode: int = 0,
                 stdout: str = "", stderr: str = "") -> None:  # fmt: skip
        self.directory, self.debs, self.returncode, self.stdout, self.stderr = (
            directory,
            debs,
            returncode,
            stdout,
            stderr,
        )
        self.calls: list[tuple[list[str], dict]] = []

    def __call__(self, cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        self.calls.append((cmd, kwargs))
        if cmd[0] == "apt-get":
            for deb in self.debs:
                (Path(str(kwargs["cwd"])) / deb).write_bytes(b"deb")
            return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)
        unpacked = Path(cmd[3]) / self.directory
        unpacked.mkdir(parents=True)
        for name in NAMES:
            (unpacked / name).write_bytes(_payload(name))
        return subprocess.CompletedProcess(cmd, 0)


@pytest.fixture
def not_installed(monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package directory that no machine has installed (relative, as the real one is), and both tools found."""
    directory = Path("usr/share/datasets/visionlab-test-absent")
    monkeypatch.setattr(fetch_module, "_DEBIAN_DIR", directory)
    monkeypatch.setattr(fetch_module.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    return directory


def test_debian_downloads_and_unpacks_the_package_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_installed: Path
) -> None:
    apt = Apt(not_installed, debs=(f"{PACKAGE}_2.0_all.deb", f"{PACKAGE}_1.0_all.deb", "other_1.0_all.deb"))
    monkeypatch.setattr(fetch_module.subprocess, "run", apt)
    assert fetch_module._from_debian(tmp_path) is True
    (download, download_kw), (unpack, unpack_kw) = apt.calls
    tmp = Path(str(download_kw["cwd"]))
    assert download == ["apt-get", "download", PACKAGE]
    assert download_kw == {"cwd": str(tmp), "capture_output": True, "text": True, "timeout": 600}
    assert unpack == ["dpkg-deb", "-x", str(tmp / f"{PACKAGE}_1.0_all.deb"), str(tmp / "x")]  # the first, sorted
    assert unpack_kw == {"check": True, "timeout": 600}
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {n: _payload(n) for n in NAMES}
    assert not tmp.exists()  # the download folder is temporary


@pytest.mark.parametrize(
    ("apt", "log"),
    [
        ({"returncode": 100, "stderr": "E: Unable to locate package\n", "stdout": "ignored"},
         "E: Unable to locate package"),
        ({"returncode": 0, "debs": (), "stdout": "  nothing fetched  "}, "nothing fetched"),
        ({"returncode": 1, "debs": (), "stdout": "only stdout"}, "only stdout"),
    ],
)  # fmt: skip
def test_debian_download_failure_is_logged_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], not_installed: Path,
    apt: dict, log: str,
) -> None:  # fmt: skip
    runner = Apt(not_installed, **apt)
    monkeypatch.setattr(fetch_module.subprocess, "run", runner)
    assert fetch_module._from_debian(tmp_path) is False
    assert [cmd for cmd, _ in runner.calls] == [["apt-get", "download", PACKAGE]]  # nothing unpacked
    assert capsys.readouterr().err == f"[visionlab] `apt-get download {PACKAGE}` failed: {log}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["apt-get", "dpkg-deb"])
def test_debian_without_apt_or_dpkg_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], not_installed: Path,
    missing: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(fetch_module.shutil, "which", lambda tool: None if tool == missing else f"/usr/bin/{tool}")
    monkeypatch.setattr(fetch_module.subprocess, "run", lambda *a, **k: pytest.fail("nothing may run"))
    assert fetch_module._from_debian(tmp_path) is False
    assert capsys.readouterr().err == "[visionlab] apt-get/dpkg-deb not found: Debian fallback unavailable\n"
