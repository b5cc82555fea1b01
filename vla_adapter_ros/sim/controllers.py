"""What the simulated robot does with controller commands (pure numpy, no ROS).

`TrajectoryFollower` behaves like a ros2_control JointTrajectoryController receiving short
trajectories: a new trajectory replaces the old one, starts at the current reference (position and
velocity) and is interpolated with cubic Hermite segments through its points at their
time_from_start; after the last point the reference stays there. Forward position commands and
JointState commands set the reference directly (`set_position`).
"""

from __future__ import annotations

import numpy as np


def _hermite(p0, v0, p1, v1, duration, t):
    """Cubic Hermite position and velocity at t in [0, duration]."""
    if duration <= 0:
        return p1.copy(), v1.copy()
    s = np.clip(t / duration, 0.0, 1.0)
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    pos = h00 * p0 + h10 * duration * v0 + h01 * p1 + h11 * duration * v1
    d00 = (6 * s**2 - 6 * s) / duration
    d10 = 3 * s**2 - 4 * s + 1
    d01 = (-6 * s**2 + 6 * s) / duration
    d11 = 3 * s**2 - 2 * s
    vel = d00 * p0 + d10 * v0 + d01 * p1 + d11 * v1
    return pos, vel


class TrajectoryFollower:
    def __init__(self, q0):
        self.position = np.asarray(q0, dtype=float).copy()
        self.velocity = np.zeros_like(self.position)
        self._segments: list[tuple[float, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]] = []

    @property
    def n(self) -> int:
        return self.position.size

    def reset(self, q0) -> None:
        self.position = np.asarray(q0, dtype=float).copy()
        self.velocity = np.zeros_like(self.position)
        self._segments = []

    def set_position(self, q) -> None:
        """Forward position command: the reference jumps there (the PD gains smooth it)."""
        q = np.asarray(q, dtype=float)
        if q.shape != self.position.shape or not np.all(np.isfinite(q)):
            raise ValueError(f"position command must be {self.n} finite values, got {q.tolist()}")
        self._segments = []
        self.position = q.copy()
        self.velocity = np.zeros_like(q)

    def set_trajectory(self, now: float, times, positions, velocities=None) -> None:
        """Replace the trajectory: points at now + times[i] (s, increasing, > 0)."""
        times = np.asarray(times, dtype=float)
        positions = np.asarray(positions, dtype=float)
        if positions.ndim != 2 or positions.shape[1] != self.n or len(times) != len(positions) or not len(times):
            raise ValueError(f"trajectory needs k x {self.n} positions with k times")
        if not np.all(np.isfinite(positions)) or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0) \
                or times[0] <= 0:
            raise ValueError("trajectory times must be finite, positive and increasing; positions finite")
        if velocities is None or len(velocities) == 0:
            velocities = np.zeros_like(positions)
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != positions.shape or not np.all(np.isfinite(velocities)):
            raise ValueError("trajectory velocities must match positions and be finite")
        self.sample(now)
        segments = []
        start_t, p, v = now, self.position.copy(), self.velocity.copy()
        for t, q, qd in zip(times, positions, velocities):
            segments.append((start_t, p, v, now + t, q.copy(), qd.copy()))
            start_t, p, v = now + t, q, qd
        self._segments = segments

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Reference position and velocity at `now` (advances the follower's state)."""
        while self._segments:
            t0, p0, v0, t1, p1, v1 = self._segments[0]
            if now < t1:
                self.position, self.velocity = _hermite(p0, v0, p1, v1, t1 - t0, now - t0)
                return self.position, self.velocity
            self._segments.pop(0)
            self.position, self.velocity = p1.copy(), v1.copy()
            if not self._segments:
                self.velocity = np.zeros_like(self.position)  # end of trajectory: hold there
        return self.position, self.velocity
