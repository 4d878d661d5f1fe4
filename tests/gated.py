"""A model wrapper for tests that need a batch held inside the model (queue full, deadline, disconnect).

Injected through the public constructor argument ``Predictor(settings, model=...)``; it runs the real
model and, once :meth:`GatedModel.hold` was called, waits for the gate before each run.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from app.config import Settings
from app.inference.model import OnnxModel


class GatedModel:
    def __init__(self, settings: Settings) -> None:
        self._model = OnnxModel.load(settings)
        self._gate: threading.Event | None = None
        self._running: threading.Event | None = None

    def hold(self, gate: threading.Event, running: threading.Event | None = None) -> None:
        """From now on every run sets ``running`` and then waits (≤ 10 s) for ``gate``."""
        self._gate, self._running = gate, running

    def run(self, feeds: Mapping[str, Any]) -> Any:
        if self._gate is not None:
            if self._running is not None:
                self._running.set()
            self._gate.wait(10)
        return self._model.run(feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)
