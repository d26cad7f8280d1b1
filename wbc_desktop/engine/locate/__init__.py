"""Where the white cells are: in a field photo, several among hundreds of
red cells; in a single-cell crop, the one near the middle.

- ``stain``: the image white-balanced against its own background, and the
  saturation map that makes nuclei stand out under any stain.
- ``red_cells``: the red-cell diameter, the ruler of a smear photo.
- ``white_cells``: the localiser itself (``find_white_cells``).
- ``framing``: a detected cell cut out the way a model was trained to see it.

No learned parts: the method and its measurements are in
``training/localiser_eval.py`` and ``training/RESULTS.md``.
"""
