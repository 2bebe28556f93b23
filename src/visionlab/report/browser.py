"""Headless Chromium driven over the DevTools protocol on a pipe: open a page, read what the browser reports
(console errors, failed loads, script results), take screenshots. Standard library only.

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands on file descriptor 3 and write
replies and events on descriptor 4, so no port, no WebSocket client and no WebDriver are needed. The report's
browser test and ``visionlab report --screenshot`` use this class; Debian's ``chromium`` package provides the
browser. POSIX only (pipes handed over by file descriptor number).

Example::

    with Chromium() as browser:
        browser.open("report.html")
        assert not browser.errors
        widths = browser.evaluate("Array.from(document.images, i => i.naturalWidth)")
        Path("shot.png").write_bytes(browser.screenshot())
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from visionlab.errors import UserError

__all__ = ["CHROMIUM_NAMES", "BrowserError", "Chromium", "find_chromium"]

# Executable names tried in order (Debian's package, other distributions' names, Google's build).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-component-update", "--disable-sync",
    "--mute-audio", "--hide-scrollbars", "--disable-dev-shm-usage", "--remote-debugging-pipe",
)  # fmt: skip


# argv: READ_FD WRITE_FD BROWSER ARGS...: the browser reads commands on 3 and writes replies on 4.
_EXEC_ON_3_AND_4 = (
    "import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); os.close(r); "
    "os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
)


class BrowserError(UserError):
    """Chromium is not installed, did not start, exited or stopped answering."""


def find_chromium() -> str | None:
    """The path of the first of :data:`CHROMIUM_NAMES` on ``PATH``, or None."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Chromium:
    """A headless Chromium with one page (tab), closed on exit of the ``with`` block.

    Args:
        executable: the browser (default :func:`find_chromium`); :class:`BrowserError` when there is none.
        width, height: the viewport in CSS pixels (default 1280 x 900, a laptop screen).
        timeout: seconds to wait for any one answer of the browser.

    Attributes:
        errors: what the page reported as errors since it was opened: console errors, uncaught exceptions and
            browser log entries of level error (a resource that failed to load, a blocked request).
    """

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900, timeout: float = 30):
        self.executable = (shutil.which(executable) or executable) if executable else find_chromium()
        if self.executable is None:
            raise BrowserError(
                f"no Chromium found on PATH (tried {', '.join(CHROMIUM_NAMES)}); on Debian or Ubuntu: "
                "apt-get install chromium"
            )
        self.width, self.height, self.timeout = width, height, timeout
        self.errors: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        self._profile = tempfile.mkdtemp(prefix="visionlab-chromium-")
        # The browser's ends of the two pipes go to a fresh Python (no threads, so nothing can deadlock between
        # fork and exec, unlike a preexec_fn) that puts them on descriptors 3 and 4 and execs the browser. They are
        # first moved to descriptors >= 10, so that neither is overwritten by the other's dup2.
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        os.close(to_browser)
        os.close(from_browser)
        argv = [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _EXEC_ON_3_AND_4, *map(str, ends), *argv],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=ends, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self._cleanup()
            raise BrowserError(f"{self.executable}: cannot start ({exc})") from exc
        finally:
            for fd in ends:
                os.close(fd)
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable", session=True)
            screen = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            self.send("Emulation.setDeviceMetricsOverride", screen, session=True)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ page
    def open(self, path: str | Path) -> None:
        """Load the local file ``path`` and wait for its load event; :attr:`errors` starts afresh."""
        self.errors = []
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=True)
        self._wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (returned by value, as JSON)."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r} raised in the page: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def screenshot(self, *, full_page: bool = False, max_height: int = 16384) -> bytes:
        """A PNG of the viewport, or of the whole page (up to ``max_height`` CSS pixels) with ``full_page``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
            params.update(captureBeyondViewport=True, clip=clip)
        return base64.b64decode(self.send("Page.captureScreenshot", params, session=True)["data"])

    # ------------------------------------------------------------------------------------------ protocol
    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False) -> dict[str, Any]:
        """Send one protocol command (to the page's session with ``session``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        try:
            os.write(self._write, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"{self.executable} stopped listening ({exc})") from exc
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            self._note(reply)

    def _wait_for(self, method: str) -> dict[str, Any]:
        while True:
            for event in self._events:
                if event.get("method") == method:
                    self._events.remove(event)
                    return event
            self._note(self._receive())

    def _note(self, event: dict[str, Any]) -> None:
        """Keep an event; record the ones that are errors."""
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        self._events.append(event)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"{self.executable} did not answer within {self.timeout:g} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError(f"{self.executable} exited (status {self._process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # ------------------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the browser (politely, then by force) and remove its temporary profile."""
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                os.write(self._write, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)  # its own session: the browser and its helpers
                process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for fd in (self._write, self._read):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._write = self._read = -1
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
