"""Guards against a Qt binding that corrupts reference counts: PySide6
6.12.0 over-releases the bool that ``Signal.emit`` returns, and after a few
thousand emits (a classification run) Python aborts."""

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    sig = Signal(object)


def test_signal_emit_keeps_reference_counts(qapp):
    e = _Emitter()
    e.sig.connect(lambda _: None)
    before = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    for i in range(50):
        e.sig.emit(i)
    after = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    assert after == before
