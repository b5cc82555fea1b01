"""Task-space output of the executor (``output: eef_delta``): EEF_DELTA chunks streamed as one
[dx dy dz drx dry drz gripper] command per control tick, without inverse kinematics.

For a downstream Cartesian controller that integrates deltas itself (LIBERO's OSC_POSE through the
LIBERO bridge, a Cartesian impedance controller). Same interface as :class:`ExecutorCore` as far
as the executor node uses it, so the node only swaps the core and the publisher.

* Rows are consumed in order, one per tick (a delta skipped would be motion lost), so the tick
  period must equal the chunk's dt. A new chunk replaces what is left of the queue.
* Safety: chunks are accepted only while running (``enable`` first) and only EEF_DELTA with 6
  columns, newer than the last one and younger than ``chunk_max_age``; a non-finite row holds and
  drops the rest of its chunk; each step's translation and rotation vectors are clamped to
  ``max_translation_m`` / ``max_rotation_rad`` (length kept along the same direction); a stale
  joint state (older than ``joint_state_timeout``) holds.
* Hold = zero delta with the last gripper state. Disabled = nothing is sent. Every command says
  what it is (``kind``): "step" (a chunk row), "wait" (running, queue empty: waiting for the next
  chunk) or "hold" (paused, stopped, estop, unsafe input). A simulator may freeze on "wait"
  until the next chunk comes, as offline evaluations do.
* The next chunk is requested at the first "wait" tick (after the last row has been sent and
  applied, so the policy sees its effect), or earlier when ``refill_threshold_s`` > 0.
* Gripper: the row's 0 (open) .. 1 (closed) value goes through the hysteresis binariser; the
  command carries the binarised state (0.0 or 1.0).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .chunk import ACTION_SPACE_NAMES, EEF_DELTA, EEF_DIM, Chunk
from .executor_core import ExecutorState, ExecutorStatus
from .gripper import CLOSED, GripperBinarizer, GripperEvent
from .scheduler import AddResult

_DT_TOLERANCE = 1e-6  # s


@dataclass(frozen=True)
class EefCommand:
    """One tick's output: ``delta`` [dx dy dz (m), drx dry drz (rad)] for this step, ``gripper``
    0.0 open / 1.0 closed. ``values`` is the 7-vector the node publishes."""

    stamp: float
    delta: np.ndarray
    gripper: float
    holding: bool
    hold_reason: Optional[str]
    dry_run: bool
    gripper_event: Optional[GripperEvent] = None
    kind: str = "step"  # step | wait | hold

    @property
    def values(self) -> list[float]:
        return [float(v) for v in self.delta] + [float(self.gripper)]


def _clamp(vector: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    norm = float(np.linalg.norm(vector))
    if norm <= limit:
        return vector, False
    return vector * (limit / norm), True


class EefDeltaCore:
    """dt: control period (s). max_translation_m / max_rotation_rad: per-step clamps.
    chunk_max_age: oldest accepted chunk (now - stamp, s). joint_state_timeout: oldest joint
    state (s) before holding (None: do not check). refill_threshold_s: ask for a chunk when the
    queue holds at most this much. joint_names: the arm joints whose state is watched."""

    def __init__(self, dt: float, joint_names: Sequence[str] = (), max_translation_m: float = 0.01,
                 max_rotation_rad: float = 0.05, chunk_max_age: float = 1.0,
                 joint_state_timeout: Optional[float] = 0.1, refill_threshold_s: float = 0.0,
                 gripper_open_threshold: float = 0.3, gripper_close_threshold: float = 0.7,
                 dry_run: bool = False):
        for name, value in (("dt", dt), ("max_translation_m", max_translation_m),
                            ("max_rotation_rad", max_rotation_rad), ("chunk_max_age", chunk_max_age)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be > 0, got {value}")
        self.dt = float(dt)
        self.joint_names = tuple(joint_names)
        self.max_translation_m = float(max_translation_m)
        self.max_rotation_rad = float(max_rotation_rad)
        self.chunk_max_age = float(chunk_max_age)
        self.joint_state_timeout = joint_state_timeout
        self.refill_threshold_s = float(refill_threshold_s)
        self.dry_run = bool(dry_run)
        self.gripper = GripperBinarizer(gripper_open_threshold, gripper_close_threshold, initial_state="open")
        self._lock = threading.RLock()
        self.state = ExecutorState.DISABLED
        self.queue: list[tuple[np.ndarray, Optional[float]]] = []
        self.last_stamp = -math.inf
        self.measured_stamp: Optional[float] = None
        self.chunks_accepted = 0
        self.chunks_rejected = 0
        self.last_chunk: Optional[AddResult] = None
        self.clip_counts = {"eef_translation": 0, "eef_rotation": 0, "non_finite": 0}
        self.last_event: Optional[str] = None
        self.last_hold_reason: Optional[str] = None
        self.holding = True
        self.waiting = False  # the last tick found the queue empty while running
        self.estop_reason: Optional[str] = None
        self.message = ""

    # ---- inputs ------------------------------------------------------------------------------
    def on_joint_state(self, q: Sequence[float], stamp: float) -> bool:
        with self._lock:
            arr = np.asarray(q, dtype=float).reshape(-1)
            if not (np.all(np.isfinite(arr)) and math.isfinite(float(stamp))):
                return False
            self.measured_stamp = float(stamp)
            return True

    def _result(self, accepted: bool, reason: str, chunk: Chunk, now: float, kept: int = 0) -> AddResult:
        result = AddResult(accepted, reason, now - float(chunk.stamp), 0, kept, int(chunk.sequence or 0))
        if accepted:
            self.chunks_accepted += 1
        else:
            self.chunks_rejected += 1
        self.last_chunk = result
        return result

    def reject_unparsable_chunk(self, reason: str, sequence: int = 0) -> AddResult:
        """Same contract as ExecutorCore.reject_unparsable_chunk."""
        with self._lock:
            self.chunks_rejected += 1
            self.last_chunk = AddResult(False, reason, float("nan"), sequence=int(sequence))
            return self.last_chunk

    def on_chunk(self, chunk: Chunk, now: float) -> AddResult:
        with self._lock:
            if chunk.is_stop:
                self.queue = []
                result = AddResult(True, "stop chunk: queue cleared, holding", float("nan"),
                                   sequence=int(chunk.sequence or 0))
                self.last_chunk = result
                return result
            if self.state != ExecutorState.RUNNING:
                return self._result(False, f"executor is {self.state.value}, not running", chunk, now)
            if chunk.action_space != EEF_DELTA:
                name = ACTION_SPACE_NAMES.get(chunk.action_space, chunk.action_space)
                return self._result(False, f"output eef_delta takes EEF_DELTA chunks, got {name}", chunk, now)
            actions = np.asarray(chunk.actions, dtype=float)
            if actions.ndim != 2 or actions.shape[1] != EEF_DIM:
                return self._result(False, f"EEF_DELTA needs {EEF_DIM} columns, got shape {actions.shape}", chunk, now)
            if abs(float(chunk.dt) - self.dt) > _DT_TOLERANCE:
                return self._result(False, f"chunk dt {chunk.dt} s != control period {self.dt} s", chunk, now)
            age = now - float(chunk.stamp)
            if not math.isfinite(age) or age > self.chunk_max_age:
                return self._result(False, f"stale chunk: {age:.3f} s old > {self.chunk_max_age} s", chunk, now)
            if float(chunk.stamp) > now + self.dt:
                return self._result(False, f"chunk stamped {-age:.3f} s in the future", chunk, now)
            if float(chunk.stamp) <= self.last_stamp:
                return self._result(False, "out of order: not newer than the last chunk", chunk, now)
            gripper = chunk.gripper
            if gripper is not None and len(gripper) != len(actions):
                return self._result(False, f"{len(gripper)} gripper values for {len(actions)} rows", chunk, now)
            self.last_stamp = float(chunk.stamp)
            self.queue = [(actions[i].copy(), None if gripper is None else float(gripper[i]))
                          for i in range(len(actions))]
            return self._result(True, "", chunk, now, kept=len(self.queue))

    # ---- state machine (the subset of ExecutorCore's that applies) ---------------------------
    def _fresh(self, now: float) -> bool:
        if self.joint_state_timeout is None:
            return True
        return self.measured_stamp is not None and now - self.measured_stamp <= self.joint_state_timeout

    def _set(self, state: ExecutorState, message: str, ok: bool = True) -> tuple[bool, str]:
        if ok:
            self.state = state
            self.queue = []
            self.waiting = False
        self.message = message
        return ok, message

    def enable(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.state == ExecutorState.ESTOP:
                return self._set(self.state, "estop is latched: reset first", ok=False)
            if self.state not in (ExecutorState.DISABLED, ExecutorState.STOPPING):
                return self._set(self.state, f"already enabled ({self.state.value})", ok=False)
            if not self._fresh(now):
                return self._set(self.state, "no fresh joint state: cannot enable", ok=False)
            self.last_stamp = -math.inf
            return self._set(ExecutorState.RUNNING, "enabled and running")

    def disable(self) -> tuple[bool, str]:
        with self._lock:
            if self.state == ExecutorState.ESTOP:
                return self._set(self.state, "estop is latched: reset first", ok=False)
            return self._set(ExecutorState.DISABLED, "disabled")

    def start(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.IDLE:
                return self._set(self.state, f"start needs state idle, state is {self.state.value}", ok=False)
            return self._set(ExecutorState.RUNNING, "running")

    def pause(self) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.RUNNING:
                return self._set(self.state, f"pause needs state running, state is {self.state.value}", ok=False)
            return self._set(ExecutorState.PAUSED, "paused")

    def resume(self) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.PAUSED:
                return self._set(self.state, f"resume needs state paused, state is {self.state.value}", ok=False)
            return self._set(ExecutorState.RUNNING, "running")

    def stop(self) -> tuple[bool, str]:
        with self._lock:
            if self.state not in (ExecutorState.RUNNING, ExecutorState.PAUSED, ExecutorState.IDLE):
                return self._set(self.state, f"stop is not possible in state {self.state.value}", ok=False)
            return self._set(ExecutorState.IDLE, "stopped (holding)")

    def go_home(self) -> tuple[bool, str]:
        with self._lock:
            return self._set(self.state, "go_home is not available with output eef_delta", ok=False)

    def estop(self, reason: str = "estop requested") -> tuple[bool, str]:
        with self._lock:
            self.estop_reason = reason
            return self._set(ExecutorState.ESTOP, f"estop latched: {reason}")

    def reset(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.ESTOP:
                return self._set(self.state, f"reset needs state estop, state is {self.state.value}", ok=False)
            self.estop_reason = None
            return self._set(ExecutorState.IDLE, "estop reset: idle")

    # ---- control tick ------------------------------------------------------------------------
    def tick(self, now: float) -> Optional[EefCommand]:
        with self._lock:
            if self.state == ExecutorState.DISABLED:
                return None
            reason, row = None, None
            if self.state != ExecutorState.RUNNING:
                reason = self.state.value
            elif not self._fresh(now):
                reason = "stale joint state"
                self.queue = []
            elif self.queue:
                row = self.queue.pop(0)
            event = None
            if row is not None:
                delta, grip = row
                if not (np.all(np.isfinite(delta)) and (grip is None or math.isfinite(grip))):
                    self.clip_counts["non_finite"] += 1
                    self.last_event = "non-finite action: held and dropped the rest of the chunk"
                    reason, row = "non-finite action", None
                    self.queue = []
            if row is not None:
                delta, grip = row
                translation, clipped_t = _clamp(delta[:3], self.max_translation_m)
                rotation, clipped_r = _clamp(delta[3:], self.max_rotation_rad)
                for key, clipped in (("eef_translation", clipped_t), ("eef_rotation", clipped_r)):
                    if clipped:
                        self.clip_counts[key] += 1
                        self.last_event = f"{key} clamped"
                delta = np.concatenate([translation, rotation])
                if grip is not None:
                    event = self.gripper.update(grip, now)
            else:
                delta = np.zeros(EEF_DIM)
            self.holding = row is None
            self.waiting = row is None and reason is None
            self.last_hold_reason = reason
            closed = 1.0 if self.gripper.state == CLOSED else 0.0
            kind = "step" if row is not None else ("wait" if self.waiting else "hold")
            return EefCommand(now, delta, closed, self.holding, reason, self.dry_run, event, kind)

    def needs_chunk(self, now: float) -> bool:
        with self._lock:
            if self.state != ExecutorState.RUNNING:
                return False
            if not self.queue:
                return self.waiting
            return len(self.queue) * self.dt <= self.refill_threshold_s + 1e-9

    def status(self, now: float) -> ExecutorStatus:
        with self._lock:
            last = self.last_chunk
            return ExecutorStatus(
                state=self.state.value, dry_run=self.dry_run, holding=self.holding,
                hold_reason=self.last_hold_reason, queue_depth=len(self.queue),
                queue_remaining_s=len(self.queue) * self.dt, needs_chunk=self.needs_chunk(now),
                chunks_accepted=self.chunks_accepted, chunks_rejected=self.chunks_rejected,
                last_chunk_latency=None if last is None else last.latency,
                last_chunk_reject_reason=None if last is None or last.accepted else last.reason,
                clip_counts=dict(self.clip_counts), last_safety_event=self.last_event,
                estop_reason=self.estop_reason, at_start_pose=None,
                joint_state_age=None if self.measured_stamp is None else now - self.measured_stamp,
                gripper_state=self.gripper.state, message=self.message,
            )
