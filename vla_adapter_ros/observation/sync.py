"""Assemble one observation (all cameras + robot state) from asynchronous input streams.

Inputs arrive with their header stamps (seconds, the clock the robot uses). The assembler keeps the
newest message per state input and the last few frames per camera, and builds an observation from
the newest set of frames whose stamps agree (spread <= max_skew; when one camera's newest frame has
arrived and another's has not yet, the previous matching pair is used) with the newest state, only
when every input is present and fresh (age <= max_age).
Otherwise it refuses with a reason a human can act on. Time is always passed in (`now`), never read.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 4096
CAMERA_HISTORY = 4  # frames kept per camera to find a set with matching stamps


class InputRejected(ValueError):
    """One incoming message was not accepted (bad values, wrong size, out of order)."""


class ObservationRefused(RuntimeError):
    """No observation can be built right now; the message says why."""


@dataclass
class _Latest:
    stamp: float
    value: np.ndarray


@dataclass
class Observation:
    """A synchronised observation. `stamp` is the reference camera's stamp (the first camera)."""

    stamp: float
    images: list[np.ndarray]  # RGB uint8 HxWx3, in camera order
    state: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. joint positions, EEF pose
    ages: dict[str, float] = field(default_factory=dict)  # seconds, per input, at assembly time


class ObservationAssembler:
    """Keeps the newest frame per camera and the newest vector per state input."""

    def __init__(
        self,
        cameras: list[str],
        states: list[str],
        max_skew: float = 0.05,
        max_age: float = 0.2,
        image_size: tuple[int, int] | None = None,
        state_sizes: dict[str, int] | None = None,
    ):
        if not cameras:
            raise ValueError("at least one camera is needed")
        if len(set(cameras) | set(states)) != len(cameras) + len(states):
            raise ValueError(f"input names must be unique: cameras {cameras}, states {states}")
        if not (max_skew >= 0 and max_age > 0):
            raise ValueError(f"need max_skew >= 0 and max_age > 0, got {max_skew}, {max_age}")
        self.cameras = list(cameras)
        self.states = list(states)
        self.max_skew = float(max_skew)
        self.max_age = float(max_age)
        self.image_size = tuple(image_size) if image_size else None
        self.state_sizes = dict(state_sizes or {})
        self._latest: dict[str, _Latest] = {}
        self._frames: dict[str, deque[_Latest]] = {c: deque(maxlen=CAMERA_HISTORY) for c in self.cameras}
        self.out_of_order = 0

    @property
    def inputs(self) -> list[str]:
        return self.cameras + self.states

    def _store(self, name: str, stamp: float, value: np.ndarray) -> None:
        if not math.isfinite(stamp):
            raise InputRejected(f"{name}: stamp {stamp} is not finite")
        held = self._latest.get(name)
        if held is not None and stamp < held.stamp:
            self.out_of_order += 1
            raise InputRejected(
                f"{name}: stamp {stamp:.3f} is older than the held {held.stamp:.3f} (out of order), dropped"
            )
        self._latest[name] = _Latest(stamp, value)
        if name in self._frames:
            self._frames[name].append(self._latest[name])

    def add_image(self, name: str, stamp: float, rgb: np.ndarray) -> None:
        if name not in self.cameras:
            raise InputRejected(f"unknown camera {name!r}; configured: {self.cameras}")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputRejected(f"{name}: expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        height, width = rgb.shape[:2]
        if not (MIN_IMAGE_SIDE <= height <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= width <= MAX_IMAGE_SIDE):
            raise InputRejected(
                f"{name}: image size {width}x{height} outside {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} px per side"
            )
        if self.image_size and (height, width) != self.image_size:
            expected_h, expected_w = self.image_size
            raise InputRejected(f"{name}: image is {width}x{height}, expected {expected_w}x{expected_h}")
        self._store(name, stamp, rgb)

    def add_state(self, name: str, stamp: float, values) -> None:
        if name not in self.states:
            raise InputRejected(f"unknown state input {name!r}; configured: {self.states}")
        vector = np.asarray(values, dtype=np.float64).reshape(-1)
        expected = self.state_sizes.get(name)
        if expected is not None and vector.size != expected:
            raise InputRejected(f"{name}: expected {expected} values, got {vector.size}")
        if not np.all(np.isfinite(vector)):
            raise InputRejected(f"{name}: non-finite values {vector.tolist()}")
        self._store(name, stamp, vector)

    def ages(self, now: float) -> dict[str, float | None]:
        """Age in seconds of the newest message per input (None: never received)."""
        return {n: (now - self._latest[n].stamp) if n in self._latest else None for n in self.inputs}

    def assemble(self, now: float) -> Observation:
        missing = [n for n in self.inputs if n not in self._latest]
        if missing:
            raise ObservationRefused(f"no data yet from {', '.join(missing)}")
        newest = {n: now - self._latest[n].stamp for n in self.inputs}
        stale = [f"{n} ({age * 1e3:.0f} ms)" for n, age in newest.items() if age > self.max_age]
        if stale:  # a silent stream, named as such (not as a stamp mismatch)
            raise ObservationRefused(f"stale input: {', '.join(stale)} older than {self.max_age * 1e3:.0f} ms")
        frames = self._matching_frames()
        if frames is None:
            stamps = [self._latest[c].stamp for c in self.cameras]
            raise ObservationRefused(
                f"cameras out of sync: stamps spread {(max(stamps) - min(stamps)) * 1e3:.0f} ms > "
                f"{self.max_skew * 1e3:.0f} ms"
            )
        ages = {c: now - f.stamp for c, f in zip(self.cameras, frames)}
        ages.update({n: now - self._latest[n].stamp for n in self.states})
        stale = [f"{n} ({age * 1e3:.0f} ms)" for n, age in ages.items() if age > self.max_age]
        if stale:
            raise ObservationRefused(f"stale input: {', '.join(stale)} older than {self.max_age * 1e3:.0f} ms")
        # A stamp slightly ahead of `now` is normal under simulated time (the clock message may be
        # processed after the data); more than max_age ahead means the clocks disagree.
        future = [f"{n} ({-age * 1e3:.0f} ms ahead)" for n, age in ages.items() if age < -self.max_age]
        if future:
            raise ObservationRefused(f"stamp in the future: {', '.join(future)}; check clocks / use_sim_time")
        return Observation(
            stamp=frames[0].stamp,
            images=[f.value for f in frames],
            state={s: self._latest[s].value for s in self.states},
            ages=ages,
        )

    def _matching_frames(self) -> list[_Latest] | None:
        """The newest frame set (one per camera) whose stamps spread <= max_skew, or None."""
        candidates = sorted((f for c in self.cameras for f in self._frames[c]), key=lambda f: -f.stamp)
        for ref in candidates:  # newest reference first; every camera takes its newest frame not after it
            chosen = []
            for c in self.cameras:
                older = [f for f in self._frames[c] if f.stamp <= ref.stamp]
                if not older:
                    break
                chosen.append(older[-1])
            else:
                stamps = [f.stamp for f in chosen]
                if max(stamps) - min(stamps) <= self.max_skew:
                    return chosen
        return None
