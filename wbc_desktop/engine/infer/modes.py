"""What an input image is taken for (``cells.cut_cells``): light to import,
so the command line can offer the choices without loading the engine."""

MODES = ("auto", "cells", "fields")
NO_WHITE_CELL = "no white cell found"  # the error of a field photo without one
