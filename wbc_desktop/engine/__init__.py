"""The classification and training engine. It never imports Qt, so the CLI,
the GUI worker threads and the frozen self-test all drive the same code.

The sub-packages follow the pipeline, left to right:

- ``io``: files in and out: decode any image (``imageio``), atomic writes,
  CSV, outputs checked before work (``files``).
- ``locate``: where the white cells are in a photo or a crop
  (``white_cells``, with the red-cell ruler in ``red_cells`` and the stain-
  free nucleus map in ``stain``), and a cell cut out as a model was trained
  to see it (``framing``); box files people drew (``annotations``).
- ``data``: labelled folders and datasets (``dataset``), leak-free splits,
  decoded arrays for a split (``prepare``), the model's view of a file
  (``preprocess``), training augmentation (``augment``, settings in
  ``augment_config``).
- ``models``: network builders (``builders``, ``efficientnet_lite`` with its
  PyTorch-pickle reader ``torch_weights``), local ImageNet weights
  (``weights``), model files with their cards (``modelfile``), the app's
  model list (``registry``), BatchNorm re-estimation (``batchnorm``).
- ``train``: settings (``config``), the training loop (``trainer``,
  ``callbacks``, run-folder names in ``run_layout``), the app's fine-tune job
  (``finetune``), search (``tuning``), metrics and reports (``evaluation``).
- ``infer``: a loaded model classifying files (``classify``): a cell's
  prediction is made here; the cells of each file, crop or field photo
  (``cells``, ``modes``).
- ``review``: what a technologist decided (``session``, with the audit
  trail), the count by haematology conventions (``differential``), CSV
  exports (``export``), sorting files into class folders (``sorting``).

``progress`` (progress reports, cancellation) and ``console`` (progress on a
terminal) serve every stage.
"""
