"""The classification and training engine. It never imports Qt, so the CLI,
the GUI worker threads and the frozen self-test all drive the same code."""
