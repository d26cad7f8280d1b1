"""Start-up: seconds from launching a fresh process to the main window being
shown, to the shipped model being ready to classify, and to its forward
pass being traced in the background (after which the first cell costs a
plain forward pass, timed last)."""

from __future__ import annotations

import time

from .common import run_child

CODE = """
import os, time
T0 = float(os.environ['WBC_T0'])
from PySide6.QtWidgets import QApplication
from wbc_desktop.gui.main_window import MainWindow
app = QApplication([])
w = MainWindow(); w.show(); app.processEvents()
RESULT['window_shown_s'] = time.time() - T0
w.load_initial_model()
while w.classifier is None and time.time() - T0 < 120:
    app.processEvents(); time.sleep(0.005)
RESULT['model_ready_s'] = time.time() - T0
while 'prepare model' in w.state.jobs.running.values() and time.time() - T0 < 120:
    app.processEvents(); time.sleep(0.005)
RESULT['model_warm_s'] = time.time() - T0
import numpy as np
t = time.time(); w.classifier.predict_arrays(np.zeros((1, w.classifier.size, w.classifier.size, 3), np.uint8))
RESULT['first_cell_s'] = time.time() - t
w.close()  # waits for the loader thread to end before the process does
"""


def run(repeat: int = 3) -> dict:
    runs = [run_child(CODE, {"WBC_T0": repr(time.time())}) for _ in range(repeat)]
    return {k: min(r[k] for r in runs) for k in ("window_shown_s", "model_ready_s", "model_warm_s", "first_cell_s")}
