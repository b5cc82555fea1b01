"""Run model predictions off the caller's thread with a one-slot, latest-wins request queue.

ROS callbacks must never block on the GPU: they `submit()` a request and return. While a prediction
runs, newer requests replace the pending one, so the model always works on the freshest observation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import numpy as np


class LatencyWindow:
    """Rolling window of durations (ms) with percentiles."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._values.append(float(value_ms))

    def percentile(self, q: float) -> float:
        """q-th percentile in ms, NaN when empty."""
        with self._lock:
            if not self._values:
                return float("nan")
            return float(np.percentile(np.fromiter(self._values, float), q))

    def __len__(self) -> int:
        return len(self._values)


class InferenceWorker:
    """One background thread calling `run(request)`; results go to `on_result(request, result, error)`."""

    def __init__(
        self,
        run: Callable[[Any], Any],
        on_result: Callable[[Any, Any, BaseException | None], None],
        name: str = "inference",
    ):
        self._run = run
        self._on_result = on_result
        self._pending: Any = None
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self.replaced = 0  # requests dropped because a newer one arrived first
        self.latency = LatencyWindow()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Any) -> bool:
        """Queue `request`, replacing a pending one. Returns False if the worker is stopped."""
        with self._cond:
            if self._stopping:
                return False
            if self._pending is not None:
                self.replaced += 1
            self._pending = request
            self._cond.notify()
            return True

    @property
    def busy(self) -> bool:
        """True while a request is pending or running."""
        with self._cond:
            return self._busy or self._pending is not None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                request, self._pending = self._pending, None
                self._busy = True
            start = time.perf_counter()
            result, error = None, None
            try:
                result = self._run(request)
            except Exception as exc:  # reported to the owner, never kills the thread
                error = exc
            self.latency.add((time.perf_counter() - start) * 1e3)
            try:
                self._on_result(request, result, error)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running (for tests and shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy or self._pending is not None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        self._thread.join(timeout)
