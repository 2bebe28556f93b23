"""Progress reporting that suits where it goes: a redrawn tqdm bar on a terminal, a plain line every
``interval`` seconds when stderr is a file or a pipe (a CI log, ``2> train.log``, ``| tee``), nothing when off.

Why: a tqdm bar written to a file emits one carriage-return-separated record per redraw — several MB of log for
one run, unreadable in CI. A line per ``interval`` seconds (and one at the end) says the same in a few lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

from tqdm import tqdm

__all__ = ["LineProgress", "progress"]

T = TypeVar("T")
DEFAULT_INTERVAL = 10.0  # seconds between lines when the output is not a terminal


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    enabled: bool = True,
    stream: IO[str] | None = None,
    interval: float = DEFAULT_INTERVAL,
    leave: bool = False,
) -> tqdm | LineProgress[T]:
    """Wrap ``iterable`` in the progress display that suits ``stream`` (default ``sys.stderr``): a tqdm bar on a
    terminal, a :class:`LineProgress` elsewhere, a silent pass-through when not ``enabled``. Every variant has
    ``set_postfix(**values)`` and ``close()``."""
    stream = sys.stderr if stream is None else stream
    if enabled and _is_terminal(stream):
        return tqdm(iterable, desc=desc, leave=leave, file=stream, dynamic_ncols=True)
    return LineProgress(iterable, desc=desc, stream=stream if enabled else None, interval=interval)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


class LineProgress(Generic[T]):
    """Iterate ``iterable``, writing ``"desc: i/total (p%) 12s, ~30s left, key=value ..."`` to ``stream`` at
    most once per ``interval`` seconds of ``clock`` and once at the end; ``stream=None`` writes nothing.

    ``clock`` (seconds, monotonic) is a parameter so tests drive time by hand."""

    def __init__(
        self,
        iterable: Iterable[T],
        *,
        desc: str,
        stream: IO[str] | None,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iterable, self.desc, self.stream, self.interval, self.clock = iterable, desc, stream, interval, clock
        try:
            self.total: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
        self.n, self.postfix, self.closed = 0, {}, False
        self.start = self.last = clock()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}

    def __iter__(self) -> Iterator[T]:
        for item in self.iterable:
            self.n += 1  # counted when handed out, so a loop that breaks early still reports it
            yield item
            if self.stream is not None and self.clock() - self.last >= self.interval:
                self._write()
        self.close()

    def close(self) -> None:
        """Write the final line (once) when anything was iterated."""
        if not self.closed and self.stream is not None and self.n > 0:
            self._write()
        self.closed = True

    def line(self) -> str:
        elapsed = self.clock() - self.start
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        parts = [f"{self.desc}: {count}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        timing = f"{elapsed:.0f}s"
        if self.total and 0 < self.n < self.total:
            timing += f", ~{elapsed * (self.total - self.n) / self.n:.0f}s left"
        parts.append(timing)
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return " ".join(parts[:1]) + " " + ", ".join(parts[1:])

    def _write(self) -> None:
        assert self.stream is not None
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self.last = self.clock()
