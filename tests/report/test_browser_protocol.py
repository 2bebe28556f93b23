"""report.browser without starting a browser: a recording stand-in for ``subprocess.Popen`` keeps the browser's ends
of the two pipes, answers from replies queued in advance and hands back every byte Chromium sent (exact command
line, protocol messages, timeouts, messages compared whole); then one real Chromium, when installed."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from visionlab.report import browser
from visionlab.report.browser import CHROMIUM_NAMES, FLAGS, BrowserError, Chromium, find_chromium


def _message(m: dict) -> bytes:
    return json.dumps(m).encode() + b"\0"


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


class FakeProcess:
    """The browser process: records how it was started, waited for and polled."""

    def __init__(self, args: list[str], **kwargs) -> None:
        self.args, self.kwargs = args, kwargs
        ends = kwargs["pass_fds"]
        self.ends_at_start = [
            (fd, not _closed(fd), bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)) for fd in ends
        ]
        self.commands, self.replies = os.dup(ends[0]), os.dup(ends[1])  # the browser's ends, kept past the close
        os.set_blocking(self.commands, False)
        self.pid, self.returncode, self.hangs, self.calls = 4242, None, False, []

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        self.calls.append(("wait", timeout))
        if self.hangs and timeout is not None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        self.returncode = 0
        return 0

    def reply(self, *messages: dict) -> None:
        os.write(self.replies, b"".join(_message(m) for m in messages))

    def sent(self) -> bytes:
        """Every byte Chromium wrote to the browser since the last call."""
        out = b""
        while True:
            try:
                chunk = os.read(self.commands, 1 << 16)
            except BlockingIOError:
                return out
            if not chunk:
                return out
            out += chunk

    def hang_up(self, which: str) -> None:
        os.close(getattr(self, which))
        setattr(self, which, -1)

    def release(self) -> None:
        for fd in (self.commands, self.replies):
            if fd != -1:
                os.close(fd)


def init_replies(target: str = "T1", session: str = "S1") -> list[dict]:
    return [{"id": 1, "result": {"targetId": target}}, {"id": 2, "result": {"sessionId": session}},
            {"id": 3, "result": {}}, {"id": 4}, {"id": 5, "result": {}}, {"id": 6, "result": {}}]  # fmt: skip


def init_sent(width: int = 1280, height: int = 900, target: str = "T1", session: str = "S1") -> bytes:
    screen = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
    return b"".join(_message(m) for m in [
        {"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}},
        {"id": 2, "method": "Target.attachToTarget", "params": {"targetId": target, "flatten": True}},
        {"id": 3, "method": "Page.enable", "params": {}, "sessionId": session},
        {"id": 4, "method": "Runtime.enable", "params": {}, "sessionId": session},
        {"id": 5, "method": "Log.enable", "params": {}, "sessionId": session},
        {"id": 6, "method": "Emulation.setDeviceMetricsOverride", "params": screen, "sessionId": session},
    ])  # fmt: skip


CLOSE = _message({"id": 0, "method": "Browser.close"})


def _started(fake) -> tuple[Chromium, FakeProcess]:
    """A Chromium past its handshake and the fake browser it talks to, with the handshake's bytes read off."""
    c = Chromium()
    p = fake.processes[-1]
    assert p.sent() == init_sent()
    return c, p


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Popen replaced by a FakeProcess answering ``fake.queue`` (the handshake by default); which() recorded."""

    Fake = SimpleNamespace(queue=init_replies(), processes=[], which=[], paths={"chromium": "/usr/bin/chromium"},
                           killed=[])  # fmt: skip

    def popen(args, **kwargs):
        process = FakeProcess(args, **kwargs)
        process.reply(*Fake.queue)
        Fake.processes.append(process)
        return process

    def which(name):
        Fake.which.append(name)
        return Fake.paths.get(name)

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(browser.shutil, "which", which)
    monkeypatch.setattr(os, "killpg", lambda pid, sig: Fake.killed.append((pid, sig)))
    yield Fake
    for p in Fake.processes:
        p.release()


def test_find_chromium_tries_each_name_in_order(fake) -> None:
    """The first name on PATH wins, in the order of CHROMIUM_NAMES; None when there is none."""
    assert CHROMIUM_NAMES == ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    fake.paths = {"google-chrome": "/opt/gc", "google-chrome-stable": "/opt/gcs"}
    assert find_chromium() == "/opt/gc"
    assert fake.which == ["chromium", "chromium-browser", "google-chrome"]
    fake.paths, fake.which[:] = {}, []
    assert find_chromium() is None
    assert fake.which == list(CHROMIUM_NAMES)


def test_no_chromium_is_one_message_and_starts_nothing(fake) -> None:
    """Without a browser on PATH: the whole message, nothing started."""
    fake.paths = {}
    with pytest.raises(BrowserError) as raised:
        Chromium()
    assert str(raised.value) == (
        "no Chromium found on PATH (tried chromium, chromium-browser, google-chrome, google-chrome-stable); "
        "on Debian or Ubuntu: apt-get install chromium"
    )
    assert fake.processes == []


def test_command_line_handshake_and_close(fake) -> None:
    """The exact command line and pipes, the handshake's messages, and a polite close that removes the profile."""
    fake.paths = {"mybrowser": "/usr/local/bin/mybrowser"}
    c = Chromium("mybrowser", width=640, height=480, timeout=5)
    (p,) = fake.processes
    assert fake.which == ["mybrowser"]
    assert (c.executable, c.width, c.height, c.timeout, c.errors) == ("/usr/local/bin/mybrowser", 640, 480, 5, [])
    profile = Path(c._profile)
    assert profile.is_dir() and profile.parent == Path(tempfile.gettempdir())
    assert profile.name.startswith("visionlab-chromium-")
    ends = p.kwargs["pass_fds"]
    assert [(fd >= 10, is_open, cloexec) for fd, is_open, cloexec in p.ends_at_start] == [(True, True, True)] * 2
    assert all(_closed(fd) for fd in ends)  # the browser's ends are closed in this process once it started
    assert p.args == [sys.executable, "-I", "-S", "-c", browser._EXEC_ON_3_AND_4, str(ends[0]), str(ends[1]),
                      "/usr/local/bin/mybrowser", *FLAGS, f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
    assert p.kwargs == dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=ends, start_new_session=True)  # fmt: skip
    assert p.sent() == init_sent(640, 480)
    assert c._session == "S1"
    with c as entered:
        assert entered is c
    assert p.sent() == CLOSE and p.calls == [("wait", 10)] and fake.killed == []
    assert not profile.exists() and (c._write, c._read) == (-1, -1)
    c.close()  # a second close: nothing left to do, no error
    assert p.calls == [("wait", 10)]


def test_the_browser_ends_are_moved_to_descriptors_from_ten(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """F_DUPFD_CLOEXEC's floor is 10: with the lowest free descriptor instead, an end could land on 3 or 4 and be
    overwritten by the other's dup2 in the child. (In pytest the lowest free one is already >= 10, so the floor is
    read off the calls.)"""
    calls = []

    def recording(fd: int, cmd: int, arg: int = 0) -> int:
        calls.append((cmd, arg))
        return fcntl.fcntl(fd, cmd, arg)

    monkeypatch.setattr(browser, "fcntl", SimpleNamespace(F_DUPFD_CLOEXEC=fcntl.F_DUPFD_CLOEXEC, fcntl=recording))
    Chromium("chromium").close()
    assert calls == [(fcntl.F_DUPFD_CLOEXEC, 10)] * 2


def test_defaults_and_an_executable_not_on_path(fake) -> None:
    """No executable: find_chromium's; one that which() does not know is used as given; 1280 x 900, 30 s."""
    c = Chromium()
    assert (c.executable, c.width, c.height, c.timeout) == ("/usr/bin/chromium", 1280, 900, 30)
    assert fake.processes[0].sent() == init_sent()
    assert fake.processes[0].args[7] == "/usr/bin/chromium"
    c.close()
    d = Chromium("./chrome")
    assert d.executable == "./chrome" and fake.processes[1].args[7] == "./chrome"
    d.close()


def test_a_browser_that_cannot_start(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Popen's OSError: one message naming the executable, the profile removed, every pipe closed."""
    made = []

    def refuse(args, **kwargs):
        made.append(kwargs["pass_fds"])
        raise OSError("exec format error")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    real_mkdtemp = tempfile.mkdtemp
    profiles = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: profiles.append(real_mkdtemp(**kw)) or profiles[-1])
    with pytest.raises(BrowserError) as raised:
        Chromium("/x/chrome")
    assert str(raised.value) == "/x/chrome: cannot start (exec format error)"
    assert isinstance(raised.value.__cause__, OSError)
    assert not Path(profiles[0]).exists()
    assert all(_closed(fd) for fd in made[0])


def test_a_failed_handshake_closes_the_browser(fake) -> None:
    """An error reply: BrowserError "method: message" (the whole error without a message), the browser closed."""
    fake.queue = [{"id": 1, "error": {"code": -32000, "message": "no targets"}}]
    with pytest.raises(BrowserError, match=r"^Target\.createTarget: no targets$"):
        Chromium()
    p = fake.processes[0]
    assert p.sent() == _message({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}) + CLOSE
    assert p.calls == [("wait", 10)]
    fake.queue = [*init_replies()[:2], {"id": 3, "error": {"code": 7}}]
    with pytest.raises(BrowserError) as raised:
        Chromium()
    assert str(raised.value) == "Page.enable: {'code': 7}"
    assert fake.processes[1].calls == [("wait", 10)]


def test_open_waits_for_a_fresh_load_event(fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open() forgets earlier errors and load events, navigates to the file's URI, and returns on the next load."""
    stale_error = {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "old"}}}
    stale_load = {"method": "Page.loadEventFired", "params": {"timestamp": 1}}
    other = {"method": "Page.frameNavigated", "params": {}}
    fake.queue = [*init_replies()[:5], stale_error, stale_load, other, init_replies()[5]]
    c, p = _started(fake)
    assert c.errors == ["old"] and c._events == [stale_error, stale_load, other]
    (tmp_path / "page.html").write_text("<p>x</p>")
    monkeypatch.chdir(tmp_path)
    new_error = {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "new"}}}
    load = {"method": "Page.loadEventFired", "params": {"timestamp": 2}}
    p.reply({"id": 7, "result": {"frameId": "F"}}, new_error, load, {"id": 99})  # the last one stays unread
    c.open("page.html")
    url = (tmp_path / "page.html").resolve().as_uri()
    assert p.sent() == _message({"id": 7, "method": "Page.navigate", "params": {"url": url}, "sessionId": "S1"})
    assert c.errors == ["new"]
    assert c._events == [stale_error, other, new_error]  # the load event it waited for is taken out
    assert c._buffer == _message({"id": 99})
    c.close()


def test_evaluate_returns_the_value_or_raises_the_page_exception(fake) -> None:
    """Runtime.evaluate by value; a missing value is None; an exception in the page is a RuntimeError."""
    c, p = _started(fake)
    p.reply({"id": 7, "result": {"result": {"type": "number", "value": 3}}}, {"id": 8, "result": {"result": {}}},
            {"id": 9, "result": {"exceptionDetails": {"text": "Uncaught ReferenceError"}, "result": {}}})  # fmt: skip
    assert c.evaluate("1 + 2") == 3
    assert c.evaluate("undefined") is None
    with pytest.raises(RuntimeError) as raised:
        c.evaluate("boom()")
    assert str(raised.value) == "'boom()' raised in the page: Uncaught ReferenceError"
    assert p.sent() == b"".join(
        _message({"id": i, "method": "Runtime.evaluate", "params": {"expression": e, "returnByValue": True},
                  "sessionId": "S1"})
        for i, e in ((7, "1 + 2"), (8, "undefined"), (9, "boom()"))
    )  # fmt: skip
    c.close()


def test_screenshots_of_the_viewport_and_of_the_whole_page(fake) -> None:
    """PNG bytes decoded from base64; a full page is clipped at its CSS size, at most max_height high."""
    c, p = _started(fake)
    data = base64.b64encode(b"\x89PNG shot").decode()
    metrics = {"cssContentSize": {"width": 800.5, "height": 20000}}
    p.reply(
        {"id": 7, "result": {"data": data}},
        {"id": 8, "result": metrics},
        {"id": 9, "result": {"data": data}},
        {"id": 10, "result": metrics},
        {"id": 11, "result": {"data": data}},
        {"id": 12, "result": {"cssContentSize": {"width": 300, "height": 250}}},
        {"id": 13, "result": {"data": ""}},
    )
    assert c.screenshot() == b"\x89PNG shot"
    assert c.screenshot(full_page=True) == b"\x89PNG shot"
    assert c.screenshot(full_page=True, max_height=100) == b"\x89PNG shot"
    assert c.screenshot(full_page=True) == b""

    def shot(i: int, clip: dict | None) -> bytes:
        params = {"format": "png"} if clip is None else {"format": "png", "captureBeyondViewport": True, "clip": clip}
        return _message({"id": i, "method": "Page.captureScreenshot", "params": params, "sessionId": "S1"})

    def layout(i: int) -> bytes:
        return _message({"id": i, "method": "Page.getLayoutMetrics", "params": {}, "sessionId": "S1"})

    assert p.sent() == (
        shot(7, None)
        + layout(8) + shot(9, {"x": 0, "y": 0, "width": 800.5, "height": 16384, "scale": 1})
        + layout(10) + shot(11, {"x": 0, "y": 0, "width": 800.5, "height": 100, "scale": 1})
        + layout(12) + shot(13, {"x": 0, "y": 0, "width": 300, "height": 250, "scale": 1})
    )  # fmt: skip
    c.close()


def test_errors_the_page_reports(fake) -> None:
    """Console errors and asserts, uncaught exceptions and error log entries, each as one line; others ignored."""
    c, p = _started(fake)
    events = [
        {"method": "Runtime.consoleAPICalled",
         "params": {"type": "error", "args": [{"value": 1}, {"description": "Error: y"}, {"type": "undefined"}]}},
        {"method": "Runtime.consoleAPICalled",
         "params": {"type": "assert", "args": [{"value": "a", "description": "d"}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "error"}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "fine"}]}},
        {"method": "Runtime.consoleAPICalled"},
        {"method": "Runtime.exceptionThrown",
         "params": {"exceptionDetails": {"text": "Uncaught", "exception": {"description": "TypeError: z"}}}},
        {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {"text": "Uncaught", "exception": {}}}},
        {"method": "Runtime.exceptionThrown", "params": {}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "text": "Failed", "url": "file:///x.png"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "url": "file:///y.png"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "text": "no url"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "warning", "text": "w"}}},
        {"method": "Log.entryAdded", "params": {}},
        {"params": {"type": "error"}},
    ]  # fmt: skip
    p.reply(*events, {"id": 7, "result": {"result": {"value": True}}})
    assert c.evaluate("true") is True
    assert c.errors == ["1 Error: y ", "a", "", "TypeError: z", "Uncaught", "exception", "Failed file:///x.png",
                        "file:///y.png", "no url"]  # fmt: skip
    assert c._events == events
    c.close()


def test_an_answer_that_does_not_come(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each wait is bounded by what is left of ``timeout``: the exact select timeouts, then the whole message."""
    c = Chromium(timeout=2.5)
    p = fake.processes[0]
    clock, waits = iter([100.0, 100.75, 101.0, 103.0, 106.0]), []

    class Time:
        @staticmethod
        def monotonic() -> float:
            return next(clock)

    class Select:
        @staticmethod
        def select(r, w, x, timeout):
            waits.append((r, w, x, timeout))
            return select.select(r, w, x, 0)

    with monkeypatch.context() as m:
        m.setattr(browser, "time", Time)
        m.setattr(browser, "select", Select)
        p.reply({"id": 7}, {"id": 8})
        assert c.send("A.one") == {} and c.send("B.two") == {}
        with pytest.raises(BrowserError) as raised:
            c.send("C.three")
    assert str(raised.value) == "/usr/bin/chromium did not answer within 2.5 s"
    assert waits == [([c._read], [], [], 1.75), ([c._read], [], [], 0)]  # the two replies came in one read
    p.hangs = True
    c.close()  # the browser does not close within 10 s: its process group is killed
    assert p.sent()[-len(CLOSE) :] == CLOSE
    assert p.calls == [("wait", 10), ("wait", None)] and fake.killed == [(4242, signal.SIGKILL)]


def test_a_browser_that_exits_or_stops_listening(fake) -> None:
    """End of file: "exited (status N)"; a write that fails: "stopped listening (...)"; close then kills it."""
    c = Chromium()
    p = fake.processes[0]
    p.hang_up("replies")
    p.returncode = 3
    with pytest.raises(BrowserError) as raised:
        c.send("A.one")
    assert str(raised.value) == "/usr/bin/chromium exited (status 3)"
    c.close()  # it has exited: nothing written, nothing waited for
    assert p.calls == [] and fake.killed == []
    assert p.sent() == init_sent() + _message({"id": 7, "method": "A.one", "params": {}})

    d = Chromium()
    q = fake.processes[1]
    q.hang_up("commands")  # nobody reads: the write end breaks
    with pytest.raises(BrowserError) as raised:
        d.send("A.one", {"x": 1}, session=True)
    assert str(raised.value) == "/usr/bin/chromium stopped listening ([Errno 32] Broken pipe)"
    d.close()
    assert q.calls == [("wait", None)] and fake.killed == [(4242, signal.SIGKILL)]


def test_replies_split_and_joined_across_reads(fake) -> None:
    """Several messages in one read and one message over two reads are taken apart at the NUL bytes."""
    c = Chromium()
    p = fake.processes[0]
    whole = _message({"id": 7, "result": {"a": 1}}) + _message({"id": 8, "result": {"b": 2}})
    c._buffer = whole[:5]  # the start of the first reply was read already
    os.write(p.replies, whole[5:])
    assert c.send("X.a") == {"a": 1} and c._buffer == whole[len(_message({"id": 7, "result": {"a": 1}})) :]
    assert c.send("X.b") == {"b": 2} and c._buffer == b""
    c.close()


def test_a_real_chromium_opens_a_page() -> None:
    """The real browser through the real pipes: a page's value, its one broken image as an error, a screenshot."""
    if find_chromium() is None:
        pytest.skip("Chromium is not installed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "p.html"
        page.write_text('<!DOCTYPE html><html lang="en"><title>t</title><p id="p">hi</p><img src="gone.png" alt="g">')
        with Chromium(width=320, height=200) as chromium:
            chromium.open(page)
            assert chromium.evaluate("document.getElementById('p').textContent") == "hi"
            assert [e for e in chromium.errors if "ERR_FILE_NOT_FOUND" in e] == chromium.errors != []
            assert chromium.screenshot()[:8] == b"\x89PNG\r\n\x1a\n"
            profile = Path(chromium._profile)
        assert not profile.exists()
