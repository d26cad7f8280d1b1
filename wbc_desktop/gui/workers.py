"""Generator workers in the style of napari/superqt ``thread_worker``: the
engine yields items, the worker relays them as Qt signals, and an abort
request is honoured between two yields.

The public object lives in the GUI thread and re-emits what a runner on a
QThread sends it. Qt queues those signal-to-signal connections, so any
callable connected to the public signals (lambdas included) runs in the GUI
thread, never in the worker's."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..engine.progress import CancelToken

log = logging.getLogger(__name__)


Job = Callable[[CancelToken, Callable[[Any], None]], Any]


class _Runner(QObject):
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    finished = Signal()

    def __init__(self, job: Job, cancel: CancelToken):
        super().__init__()
        self.job, self.cancel = job, cancel

    @Slot()
    def run(self) -> None:
        try:
            self.returned.emit(self.job(self.cancel, self.yielded.emit))
        except Exception as exc:  # shown to the user, never a silent crash
            log.exception("worker failed")
            self.errored.emit(str(exc) or type(exc).__name__)
        finally:
            self.finished.emit()


def _drive(factory: Callable[[CancelToken], Iterator[Any]]) -> Job:
    """A generator factory as a job: abort is honoured between two yields."""

    def job(cancel: CancelToken, emit: Callable[[Any], None]):
        gen = factory(cancel)
        while True:
            if cancel.cancelled:
                gen.close()
                return None
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            emit(item)

    return job


class Worker(QObject):
    """Runs ``job(cancel, emit)`` on its own QThread. ``emit`` sends progress
    items as ``yielded``; ``returned`` carries the result, ``errored`` a
    readable message; ``finished`` always comes last, also after an abort or
    an error. Engine functions that report through a progress callback (as
    training does) run as jobs directly."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    finished = Signal()

    def __init__(self, job: Job):
        super().__init__()
        self.cancel_token = CancelToken()
        self._thread = QThread()
        self._thread.setObjectName("wbc-worker")
        self._runner = _Runner(job, self.cancel_token)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        for name in ("yielded", "returned", "errored"):
            getattr(self._runner, name).connect(getattr(self, name))
        # direct: quit() from the worker thread itself, so the thread ends even
        # while the GUI thread is blocked in wait() (closing the window)
        self._runner.finished.connect(self._thread.quit, Qt.DirectConnection)
        # ``finished`` waits for the thread itself to end, so whoever drops the
        # last reference to this worker then cannot destroy a running QThread
        self._thread.finished.connect(self._thread_ended)

    @Slot()
    def _thread_ended(self) -> None:
        self._thread.wait()
        self.finished.emit()

    def start(self) -> None:
        self._thread.start()

    def abort(self) -> None:
        self.cancel_token.cancel()

    @property
    def aborted(self) -> bool:
        return self.cancel_token.cancelled

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms)


def GeneratorWorker(factory: Callable[[CancelToken], Iterator[Any]]) -> Worker:  # noqa: N802 - reads as a class
    """A worker over an engine generator: each yielded item becomes ``yielded``."""
    return Worker(_drive(factory))


def call_in_thread(func: Callable[[], Any]) -> Worker:
    """A one-shot job (e.g. loading a model); ``returned`` carries the result."""
    return Worker(lambda cancel, emit: func())
