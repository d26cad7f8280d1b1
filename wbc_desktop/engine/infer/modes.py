"""What an input image is taken for (``cells.cut_cells``): light to import,
so the command line can offer the choices without loading the engine."""

MODES = ("auto", "cells", "fields")
NO_WHITE_CELL = "no white cell found"  # the error of a field photo without one
# grey copies of PBC cells: 96.6 % right against 99.4 % in colour (training/RESULTS.md)
GREY_IMAGE = "a grey image: no stain colour to read, so white cells were found by their darkness and the answers are less sure"
