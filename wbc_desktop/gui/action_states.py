"""Declarative enabling: each action (or button) names the states it needs,
once, where it is made; one call then enables exactly those whose needs
are met. A new action cannot be forgotten in a hand-written update."""

from __future__ import annotations

IDLE = "idle"  # no exclusive job runs
BUSY = "busy"  # an exclusive job runs (Cancel)
HAS_CELLS = "has cells"
HAS_SOURCES = "has sources"  # a folder or images are open
HAS_SELECTION = "has a selection"
MODEL_READY = "model ready"
RESUMABLE = "resumable"  # a training run can continue


class ActionStates:
    def __init__(self) -> None:
        self._needs: dict[object, frozenset[str]] = {}

    def add(self, action, *needs: str):
        """Register ``action`` (anything with ``setEnabled``); returns it."""
        self._needs[action] = frozenset(needs)
        return action

    def needs(self, action) -> frozenset[str]:
        return self._needs[action]

    def update(self, flags: set[str]) -> None:
        for action, needs in self._needs.items():
            action.setEnabled(needs <= flags)
