"""Task-space output of the executor (``output: eef_delta``): EEF_DELTA chunks streamed as one
[dx dy dz drx dry drz gripper] command per control tick, without inverse kinematics.

For a downstream Cartesian controller that integrates deltas itself (LIBERO's OSC_POSE through the
LIBERO bridge, a Cartesian impedance controller). Same interface as :class:`ExecutorCore` as far
as the executor node uses it, so the node only swaps the core and the publisher.

* Rows are consumed in order, one per tick (a delta skipped would be motion lost), so the tick
  period must equal the chunk's dt. A new chunk replaces what is left of the queue.
* Safety: chunks are accepted only while running (``enable`` first) and only EEF_DELTA with 6
  columns, newer than the last one and younger than ``chunk_max_age``; a non-finite row holds and
  drops the rest of its chunk; each row's translation and rotation vectors are clamped to
  ``max_translation_m`` / ``max_rotation_rad`` (length kept along the same direction); a stale
  joint state (older than the robot file's ``joint_state_timeout``) holds.
* Every emitted delta goes through :class:`~.safety.CartesianFilter`: tool velocity,
  acceleration and jerk within the robot file's Cartesian limits times its scales (discrete
  differences of the delta stream, per axis), and the tool point (forward kinematics of the
  measured joints) kept inside the workspace box. A row inside the limits passes unchanged.
* The state machine is the joint executor's (without go_home and the start pose): nothing is
  sent before ``enable``; an estop latches (a latched estop while disabled resets to disabled,
  never to running); disable and every hold brake to rest through the filter first.
* Hold = the filter brakes to zero delta, gripper state kept. Disabled = nothing is sent. Every
  command says what it is (``kind``): "step" (motion from a chunk), "wait" (running, queue empty,
  at rest: waiting for the next chunk) or "hold" (braking or stopped: paused, stopped, estop,
  unsafe input). A simulator may freeze on "wait" until the next chunk comes, as offline
  evaluations do.
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

from .chunk import ACTION_SPACE_NAMES, EEF_DELTA, EEF_DIM, MAX_CHUNK_ROWS, Chunk
from .executor_core import ExecutorState, ExecutorStatus, joint_state_age_ok
from .gripper import CLOSED, GripperBinarizer, GripperEvent
from .kinematics import FrankaKinematics, ToolOffset
from .limits import RobotLimits
from .safety import CartesianFilter
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
    """limits: the robot file (Cartesian limits, workspace box, joint names, watchdogs).
    dt: control period (s; default limits.control_dt). max_translation_m / max_rotation_rad:
    per-row clamps. refill_threshold_s: ask for a chunk when the queue holds at most this much."""

    def __init__(self, limits: RobotLimits, dt: Optional[float] = None, max_translation_m: float = 0.01,
                 max_rotation_rad: float = 0.05, refill_threshold_s: float = 0.0,
                 gripper_open_threshold: float = 0.3, gripper_close_threshold: float = 0.7,
                 dry_run: bool = False):
        dt = float(limits.control_dt if dt is None else dt)
        for name, value in (("dt", dt), ("max_translation_m", max_translation_m),
                            ("max_rotation_rad", max_rotation_rad)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be > 0, got {value}")
        if not (math.isfinite(refill_threshold_s) and refill_threshold_s >= 0):
            raise ValueError(f"refill_threshold_s: must be >= 0, got {refill_threshold_s}")
        self.limits = limits
        self.dt = dt
        self.joint_names = tuple(limits.joint_names)
        self.kinematics = FrankaKinematics(ToolOffset(limits.flange_length_m, limits.tcp_offset_m, limits.tool_yaw_rad))
        self.filter = CartesianFilter(limits, dt)
        self.max_translation_m = float(max_translation_m)
        self.max_rotation_rad = float(max_rotation_rad)
        self.chunk_max_age = float(limits.chunk_max_age)
        self.joint_state_timeout = float(limits.joint_state_timeout)
        self.refill_threshold_s = float(refill_threshold_s)
        self.dry_run = bool(dry_run)
        self.gripper = GripperBinarizer(gripper_open_threshold, gripper_close_threshold, initial_state="open")
        self._lock = threading.RLock()
        self.state = ExecutorState.DISABLED
        self._active = False  # commands are being sent (enabled and not yet back to DISABLED)
        self._disabling = False  # an estop came while STOPPING: its reset continues the disable
        self.queue: list[tuple[np.ndarray, Optional[float]]] = []
        self.last_stamp = -math.inf
        self.measured_q: Optional[np.ndarray] = None
        self.measured_stamp: Optional[float] = None
        self.chunks_accepted = 0
        self.chunks_rejected = 0
        self.last_chunk: Optional[AddResult] = None
        self.clip_counts = {"eef_translation": 0, "eef_rotation": 0, "non_finite": 0, "invalid_joint_state": 0,
                            "joint_state_timeout": 0, "workspace": 0}
        self.last_event: Optional[str] = None
        self.last_hold_reason: Optional[str] = None
        self.holding = True
        self.waiting = False  # the last tick found the queue empty while running, at rest
        self.estop_reason: Optional[str] = None
        self.message = ""

    # ---- inputs ------------------------------------------------------------------------------
    def on_joint_state(self, q: Sequence[float], stamp: float) -> bool:
        """Measured arm joints (rad, limits.joint_names order) received at ``stamp`` (s)."""
        with self._lock:
            try:
                arr = np.asarray(q, dtype=float).reshape(-1)
                stamp = float(stamp)
            except (TypeError, ValueError):
                arr, stamp = np.full(1, np.nan), math.nan
            if arr.shape != (len(self.joint_names),) or not (np.all(np.isfinite(arr)) and math.isfinite(stamp)):
                self.clip_counts["invalid_joint_state"] += 1
                return False
            self.measured_q = arr.copy()
            self.measured_stamp = stamp
            return True

    def tool_position(self) -> Optional[np.ndarray]:
        """Tool point (m, base frame) of the last measured joints, or None."""
        return None if self.measured_q is None else self.kinematics.fk_position(self.measured_q)

    def _inside_box(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= self.limits.workspace_min) and np.all(p <= self.limits.workspace_max))

    def _result(self, accepted: bool, reason: str, chunk: Chunk, now: float, kept: int = 0) -> AddResult:
        try:
            latency = now - float(chunk.stamp)
        except (TypeError, ValueError):
            latency = math.nan
        result = AddResult(accepted, reason, latency, 0, kept, int(getattr(chunk, "sequence", 0) or 0))
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
            try:
                actions = np.asarray(chunk.actions, dtype=float)
                stamp, chunk_dt = float(chunk.stamp), float(chunk.dt)
            except (TypeError, ValueError):
                return self._result(False, "actions, stamp or dt are not numeric", chunk, now)
            if actions.ndim != 2 or actions.shape[1] != EEF_DIM:
                return self._result(False, f"EEF_DELTA needs {EEF_DIM} columns, got shape {actions.shape}", chunk, now)
            if actions.shape[0] > MAX_CHUNK_ROWS:
                return self._result(False, f"{actions.shape[0]} rows > {MAX_CHUNK_ROWS} per chunk", chunk, now)
            if not abs(chunk_dt - self.dt) <= _DT_TOLERANCE:
                return self._result(False, f"chunk dt {chunk.dt} s != control period {self.dt} s", chunk, now)
            age = now - stamp
            if not math.isfinite(age) or age > self.chunk_max_age:
                return self._result(False, f"stale chunk: {age:.3f} s old > {self.chunk_max_age} s", chunk, now)
            if stamp > now + self.dt:
                return self._result(False, f"chunk stamped {-age:.3f} s in the future", chunk, now)
            if stamp <= self.last_stamp:
                return self._result(False, "out of order: not newer than the last chunk", chunk, now)
            gripper = chunk.gripper
            if gripper is not None and len(gripper) != len(actions):
                return self._result(False, f"{len(gripper)} gripper values for {len(actions)} rows", chunk, now)
            self.last_stamp = stamp
            self.queue = [(actions[i].copy(), None if gripper is None else float(gripper[i]))
                          for i in range(len(actions))]
            return self._result(True, "", chunk, now, kept=len(self.queue))

    # ---- state machine (ExecutorCore's, without go_home and the start pose) --------------------
    def _fresh(self, now: float) -> bool:
        return joint_state_age_ok(self.measured_stamp, now, self.joint_state_timeout)

    def _set(self, state: ExecutorState, message: str, ok: bool = True) -> tuple[bool, str]:
        if ok:
            self.state = state
            self.queue = []
            self.waiting = False
            if state != ExecutorState.RUNNING:
                self.filter.hold()
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
            p = self.tool_position()
            if not self._inside_box(p):
                return self._set(self.state, (
                    f"refused: the tool point {np.round(p, 3).tolist()} (forward kinematics of the measured "
                    f"joints, robot file {self.limits.name!r}) lies outside the workspace box "
                    f"{list(self.limits.workspace_min)}..{list(self.limits.workspace_max)}; move the arm "
                    "inside (or check the robot file and joint names); nothing was sent"), ok=False)
            if self.state == ExecutorState.DISABLED:
                self.filter.reset(p)
            self._active = True
            self.last_stamp = -math.inf
            return self._set(ExecutorState.RUNNING, "enabled and running")

    def disable(self) -> tuple[bool, str]:
        with self._lock:
            if self.state == ExecutorState.ESTOP:
                return self._set(self.state, "estop is latched: reset first", ok=False)
            if self.state == ExecutorState.DISABLED:
                return self._set(self.state, "already disabled")
            if self.filter.is_stopped:
                self._active = False
                return self._set(ExecutorState.DISABLED, "disabled")
            return self._set(ExecutorState.STOPPING, "disabling")

    def start(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.IDLE:
                return self._set(self.state, f"start needs state idle, state is {self.state.value}", ok=False)
            if not self._fresh(now):
                return self._set(self.state, "no fresh joint state: cannot start", ok=False)
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

    def resync(self) -> tuple[bool, str]:
        with self._lock:
            return self._set(self.state, "resync is not needed with output eef_delta (deltas start from rest)", ok=False)

    def estop(self, reason: str = "estop requested") -> tuple[bool, str]:
        with self._lock:
            self.estop_reason = reason
            if self.state != ExecutorState.ESTOP:
                self._disabling = self.state == ExecutorState.STOPPING
            if not self._active:
                return self._set(ExecutorState.ESTOP, f"estop latched (nothing is being sent): {reason}")
            return self._set(ExecutorState.ESTOP, f"estop latched: {reason}")

    def reset(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.state != ExecutorState.ESTOP:
                return self._set(self.state, f"reset needs state estop, state is {self.state.value}", ok=False)
            if not self._active:
                self.estop_reason = None
                return self._set(ExecutorState.DISABLED, "estop reset: disabled")
            if not self._fresh(now):
                return self._set(self.state, "no fresh joint state: cannot reset estop", ok=False)
            self.estop_reason = None
            if self._disabling:  # the estop interrupted a disable: finish it (enable is needed again)
                return self._set(ExecutorState.STOPPING, "estop reset: disabling")
            return self._set(ExecutorState.IDLE, "estop reset: idle")

    # ---- control tick ------------------------------------------------------------------------
    def tick(self, now: float) -> Optional[EefCommand]:
        """One control period: the command to send, or None while DISABLED. Never raises: an
        internal error latches an estop and the filter brakes."""
        with self._lock:
            try:
                return self._tick(now)
            except Exception as exc:  # a tick must never raise: latch the estop, brake
                self.estop(f"internal error in tick: {exc!r}")
                self.queue = []
                try:
                    delta = self.filter.step(None, self.tool_position())
                except Exception:
                    return None
                return EefCommand(now, delta, 1.0 if self.gripper.state == CLOSED else 0.0, True,
                                  "internal error", self.dry_run, None, "hold")

    def _tick(self, now: float) -> Optional[EefCommand]:
        if self.state == ExecutorState.DISABLED or not self._active:
            return None
        reason, row = None, None
        if self.state != ExecutorState.RUNNING:
            reason = self.state.value
        elif not self._fresh(now):
            reason = "stale joint state"
            self.clip_counts["joint_state_timeout"] += 1
            self.queue = []
            self.filter.hold()
        elif self.queue:
            row = self.queue.pop(0)
        event = None
        grip = None
        if row is not None:
            delta, grip = row
            if not (np.all(np.isfinite(delta)) and (grip is None or math.isfinite(grip))):
                self.clip_counts["non_finite"] += 1
                self.last_event = "non-finite action: held and dropped the rest of the chunk"
                reason, row, grip = "non-finite action", None, None
                self.queue = []
                self.filter.hold()
        target = None
        if row is not None:
            translation, clipped_t = _clamp(row[0][:3], self.max_translation_m)
            rotation, clipped_r = _clamp(row[0][3:], self.max_rotation_rad)
            for key, clipped in (("eef_translation", clipped_t), ("eef_rotation", clipped_r)):
                if clipped:
                    self.clip_counts[key] += 1
                    self.last_event = f"{key} clamped"
            target = np.concatenate([translation, rotation])
        p = self.tool_position()
        walls_before = self.filter.limited["workspace"]
        delta = self.filter.step(target, p)
        if self.filter.limited["workspace"] != walls_before:
            self.clip_counts["workspace"] += 1
            self.last_event = "tool speed toward a workspace wall limited"
        moving = bool(np.any(delta != 0.0))
        if self.state == ExecutorState.STOPPING and self.filter.is_stopped:
            self.state, self._active = ExecutorState.DISABLED, False
            self.message = "disabled"
        if self.state == ExecutorState.RUNNING and reason is None and grip is not None:
            event = self.gripper.update(grip, now)
        running_ok = self.state == ExecutorState.RUNNING and reason is None
        self.waiting = running_ok and not self.queue and not moving and not np.any(np.abs(self.filter.owed) > 1e-12)
        self.holding = not running_ok
        self.last_hold_reason = reason
        closed = 1.0 if self.gripper.state == CLOSED else 0.0
        kind = "hold" if not running_ok else ("wait" if self.waiting else "step")
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
            counts = dict(self.clip_counts)
            counts.update({f"cartesian_{k}": v for k, v in self.filter.limited.items() if k != "workspace"})
            return ExecutorStatus(
                state=self.state.value, dry_run=self.dry_run, holding=self.holding,
                hold_reason=self.last_hold_reason, queue_depth=len(self.queue),
                queue_remaining_s=len(self.queue) * self.dt, needs_chunk=self.needs_chunk(now),
                chunks_accepted=self.chunks_accepted, chunks_rejected=self.chunks_rejected,
                last_chunk_latency=None if last is None else last.latency,
                last_chunk_reject_reason=None if last is None or last.accepted else last.reason,
                clip_counts=counts, last_safety_event=self.last_event,
                estop_reason=self.estop_reason, at_start_pose=None,
                joint_state_age=None if self.measured_stamp is None else now - self.measured_stamp,
                gripper_state=self.gripper.state, message=self.message,
            )
