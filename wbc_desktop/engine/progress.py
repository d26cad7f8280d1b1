"""Progress reports and cooperative cancellation shared by every long job.

Engine functions take a ``progress`` callable and a :class:`CancelToken`; the
CLI prints the reports, the GUI worker relays them as Qt signals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable


class Cancelled(Exception):
    """Raised by a job that was asked to stop before it produced its result."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class Progress:
    """``done`` of ``total`` units of ``stage``; ``info`` carries stage extras
    such as an epoch's metrics."""

    stage: str
    done: int
    total: int
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    pass
