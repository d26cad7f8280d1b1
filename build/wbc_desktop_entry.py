"""Entry point of the frozen app (PyInstaller runs this file)."""

import multiprocessing
import sys

from wbc_desktop.gui.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
