"""Progress on a terminal, for the CLI and the training recipes."""

from __future__ import annotations

import contextlib
import os
import sys
import time

from .progress import Progress


class ProgressPrinter:
    """One self-overwriting status line on stderr; epoch summaries stay."""

    def __init__(self, stream=sys.stderr, interval: float = 0.25):
        self.stream, self.interval, self._last = stream, interval, 0.0
        self._tty = stream.isatty()

    def __call__(self, p: Progress) -> None:
        if p.stage in ("train_epoch", "tune", "data", "evaluate"):
            self._clear()
            print(p.message, file=self.stream, flush=True)
            return
        now = time.monotonic()
        if now - self._last < self.interval and p.done < p.total:
            return
        self._last = now
        frac = p.done / p.total if p.total else 1.0
        bar = "#" * int(frac * 30)
        extra = ""
        if p.stage == "train_batch":
            extra = f" epoch {p.info['epoch']}/{p.info['epochs']} loss {p.info.get('loss', float('nan')):.4f}"
        line = f"[{bar:<30}] {frac:6.1%} {p.stage} {p.done}/{p.total}{extra}"
        if self._tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        elif p.done >= p.total:
            print(line, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._tty:
            print("\r" + " " * 90 + "\r", end="", file=self.stream, flush=True)


@contextlib.contextmanager
def quiet_native_logs():
    """Standard error silenced at the file-descriptor level: C++ libraries
    (TensorFlow's absl and oneDNN lines) write there before any Python or
    environment setting can filter them. Python's own errors still come."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
