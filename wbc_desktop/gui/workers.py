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

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..engine.progress import CancelToken

log = logging.getLogger(__name__)


class _Runner(QObject):
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    finished = Signal()

    def __init__(self, factory: Callable[[CancelToken], Iterator[Any]], cancel: CancelToken):
        super().__init__()
        self.factory, self.cancel = factory, cancel

    @Slot()
    def run(self) -> None:
        try:
            gen = self.factory(self.cancel)
            while True:
                if self.cancel.cancelled:
                    gen.close()
                    break
                try:
                    item = next(gen)
                except StopIteration as stop:
                    self.returned.emit(stop.value)
                    break
                self.yielded.emit(item)
        except Exception as exc:  # shown to the user, never a silent crash
            log.exception("worker failed")
            self.errored.emit(str(exc) or type(exc).__name__)
        finally:
            self.finished.emit()


class GeneratorWorker(QObject):
    """Runs ``factory(cancel)`` (a generator) on its own QThread.

    ``yielded`` carries each item, ``returned`` the generator's return value,
    ``errored`` a readable message; ``finished`` always comes last, also
    after an abort or an error."""

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(str)
    finished = Signal()

    def __init__(self, factory: Callable[[CancelToken], Iterator[Any]]):
        super().__init__()
        self.cancel_token = CancelToken()
        self._thread = QThread()
        self._thread.setObjectName("wbc-worker")
        self._runner = _Runner(factory, self.cancel_token)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        for name in ("yielded", "returned", "errored", "finished"):
            getattr(self._runner, name).connect(getattr(self, name))
        self._runner.finished.connect(self._thread.quit)

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


def call_in_thread(func: Callable[[], Any]) -> GeneratorWorker:
    """A one-shot job (e.g. loading a model) as a worker whose ``returned``
    signal carries the result."""

    def gen(_cancel):
        return func()
        yield  # pragma: no cover - makes this a generator

    return GeneratorWorker(gen)
