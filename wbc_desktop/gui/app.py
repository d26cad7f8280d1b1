"""Start-up: the window shows first; TensorFlow and the model load on a
worker thread afterwards, with their status in the status bar."""

from __future__ import annotations

import logging
import os
import sys

from .. import paths


def _setup_logging() -> None:
    log_dir = paths.user_data_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=log_dir / "wbc-desktop.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _setup_logging()
    if "--self-test" in argv:
        from ..selftest import run

        rest = [a for a in argv if a != "--self-test"]
        return run(rest[0] if rest else None)
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName(paths.APP_NAME)
    app.setOrganizationName(paths.APP_NAME)
    app.setWindowIcon(QIcon(str(paths.resources_dir() / "icons" / "wbc_desktop.png")))
    window = MainWindow()
    window.show()
    QTimer.singleShot(0, window.load_initial_model)
    folders = [a for a in argv if not a.startswith("-")]
    if folders:
        QTimer.singleShot(0, lambda: window.open_paths(folders))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
