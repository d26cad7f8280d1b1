"""Generator workers in the style of napari/superqt ``thread_worker``: the
engine yields items, the worker relays them as Qt signals, and an abort
request is honoured between two yields.

The contract (superqt's ``_qthreading.py``): ``errored`` carries the
exception itself; an abort is reported by ``aborted``, never as an error;
``returned`` fires only for a job that was not aborted; ``finished`` always
comes last. :class:`JobRegistry` is the one place that knows which workers
run.

The public object lives in the GUI thread and re-emits what a runner on a
QThread sends it. Qt queues those signal-to-signal connections, so any
callable connected to the public signals (lambdas included) runs in the GUI
thread, never in the worker's."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..engine.progress import Cancelled, CancelToken

log = logging.getLogger(__name__)


Job = Callable[[CancelToken, Callable[[Any], None]], Any]


class _Runner(QObject):
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()

    def __init__(self, job: Job, cancel: CancelToken):
        super().__init__()
        self.job, self.cancel = job, cancel

    @Slot()
    def run(self) -> None:
        try:
            result = self.job(self.cancel, self.yielded.emit)
            if self.cancel.cancelled:
                self.aborted.emit()
            else:
                self.returned.emit(result)
        except Cancelled:
            self.aborted.emit()
        except Exception as exc:  # shown to the user, never a silent crash
            log.exception("worker failed")
            self.errored.emit(exc)
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


def describe_error(exc: BaseException) -> str:
    """One line for a dialog: the message, or the exception's type when it has none."""
    return str(exc) or type(exc).__name__


class Worker(QObject):
    """Runs ``job(cancel, emit)`` on its own QThread. ``emit`` sends progress
    items as ``yielded``. Engine functions that report through a progress
    callback (as training does) run as jobs directly."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception
    aborted = Signal()
    finished = Signal()

    def __init__(self, job: Job):
        super().__init__()
        self.cancel_token = CancelToken()
        self._thread = QThread()
        self._thread.setObjectName("wbc-worker")
        self._runner = _Runner(job, self.cancel_token)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        for name in ("yielded", "returned", "errored", "aborted"):
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
    def is_aborted(self) -> bool:
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


class JobRegistry(QObject):
    """Every running worker of the app. One *exclusive* job at a time (a
    classification, a training, a file operation: what makes the app busy);
    background workers (thumbnails, loading a model) run beside it. Closing
    the app aborts and waits for all of them."""

    busy_changed = Signal(bool)
    job_finished = Signal(str, object)  # name, worker: every exclusive job, also an aborted or failed one

    def __init__(self, parent=None):
        super().__init__(parent)
        self.running: dict[Worker, str] = {}
        self.current: Worker | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None

    def start(self, worker: Worker, name: str, exclusive: bool = True) -> bool:
        """Start ``worker``; an exclusive job is refused (False) while another runs."""
        if exclusive and self.current is not None:
            return False
        self.running[worker] = name
        worker.finished.connect(lambda: self._ended(worker))
        if exclusive:
            self.current = worker
            self.busy_changed.emit(True)
        worker.start()
        return True

    def _ended(self, worker: Worker) -> None:
        name = self.running.pop(worker, "")
        if worker is self.current:
            self.current = None
            self.busy_changed.emit(False)
            self.job_finished.emit(name, worker)

    def cancel_current(self) -> bool:
        if self.current is None:
            return False
        self.current.abort()
        return True

    def stop_all(self, ms: int = 20000) -> None:
        for w in list(self.running):
            w.abort()
        for w in list(self.running):
            w.wait(ms)
