"""The PySide6 desktop app. It drives the engine only through its public
functions, on worker threads."""
