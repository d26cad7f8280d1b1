"""WBC Desktop: offline white-blood-cell classification for pathology labs."""

__version__ = "0.1.0"
