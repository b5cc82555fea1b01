"""Gripper command binariser with hysteresis.

The policy emits a continuous gripper value per step (0 = open ... 1 = closed). The hardware
takes discrete goals (franka_gripper ``Move`` to open, ``Grasp`` to close), and sending a goal
aborts the running one, so the executor must send a goal only when the binarised state
changes, never stream. The binariser closes when the value rises to ``close_threshold`` or
above and opens when it falls to ``open_threshold`` or below; in between it keeps its state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

OPEN = "open"
CLOSED = "closed"


@dataclass(frozen=True)
class GripperEvent:
    """A change of the binarised gripper state: turn into one Move (open) or Grasp (close) goal.

    state: OPEN or CLOSED. value: the command value (0..1) that caused it. stamp: time (s).
    """

    state: str
    value: float
    stamp: float

    @property
    def closed(self) -> bool:
        return self.state == CLOSED


class GripperBinarizer:
    """Hysteresis thresholding of 0..1 gripper commands into open/closed change events.

    open_threshold < close_threshold, both in [0, 1]. initial_state: OPEN, CLOSED, or None
    (unknown: the first valid value emits an event, using 0.5 as the single threshold).
    """

    def __init__(self, open_threshold: float = 0.3, close_threshold: float = 0.7, initial_state: Optional[str] = None):
        if not (0.0 <= open_threshold < close_threshold <= 1.0):
            raise ValueError(
                f"open_threshold/close_threshold: need 0 <= open < close <= 1, got {open_threshold}, {close_threshold}"
            )
        if initial_state not in (None, OPEN, CLOSED):
            raise ValueError(f"initial_state: must be 'open', 'closed' or None, got {initial_state!r}")
        self.open_threshold = float(open_threshold)
        self.close_threshold = float(close_threshold)
        self.state: Optional[str] = initial_state
        self.event_count = 0

    def reset(self, state: Optional[str] = None) -> None:
        """Set the believed state (e.g. from the gripper's measured width), no event. ``reset()``
        forgets it: the next valid value emits an event (e.g. after a simulation reset)."""
        if state not in (None, OPEN, CLOSED):
            raise ValueError(f"state: must be 'open', 'closed' or None, got {state!r}")
        self.state = state

    def update(self, value: Optional[float], stamp: float = 0.0) -> Optional[GripperEvent]:
        """Feed one command value; returns a GripperEvent only when the state changes.

        None, NaN and inf are ignored (no change). Values outside 0..1 are clipped.
        """
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(value):
            return None
        value = min(1.0, max(0.0, value))
        if self.state is None:
            new = CLOSED if value >= 0.5 else OPEN
        elif self.state == OPEN and value >= self.close_threshold:
            new = CLOSED
        elif self.state == CLOSED and value <= self.open_threshold:
            new = OPEN
        else:
            return None
        if new == self.state:
            return None
        self.state = new
        self.event_count += 1
        return GripperEvent(new, value, float(stamp))
