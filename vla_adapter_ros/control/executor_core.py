"""Executor state machine without ROS: chunks in, safe joint commands out, one tick at a time.

Time: float seconds of ROS time everywhere (``now`` and stamps are passed in; no clock is read).
Joint arrays are in the order of ``limits.joint_names`` (use :func:`reorder_joint_state` to map
a ``sensor_msgs/JointState``).

States and transitions (every call returns ``(ok, message)``; refused calls change nothing)::

    DISABLED --enable--> RUNNING (at start pose, or require_start_pose=False)
                     +--> IDLE    (holding; not at the start pose: go_home, then start)
    DISABLED --resync--> DISABLED (forget the last command and the gripper state: the controller was restarted)
    IDLE --start--> RUNNING        RUNNING --pause--> PAUSED --resume--> RUNNING
    IDLE/RUNNING/PAUSED --go_home--> HOMING --(arrived)--> IDLE
    RUNNING/PAUSED/HOMING --stop--> IDLE
    any enabled state --disable--> STOPPING --(reference at rest)--> DISABLED
    any state --estop--> ESTOP (latched: everything but reset is refused) --reset--> IDLE
                  (--reset--> STOPPING if the estop came while disabling: a disable is never undone)

Outputs per ``tick(now)``:
  DISABLED -> None (send nothing); every other state -> a :class:`Command` (holding states send
  the smoothly stopping / stopped reference, so the controller always gets a smooth stream).
On any doubt (no or stale joint state, bad target, workspace, jump, tracking error) the core
holds; a tracking error (reference far from the measured state) latches ESTOP.

Continuity (every command, including the first after enable, reset, resume or estop, continues
the previous one within the limits):
* The reference is never re-based while commands flow: reset, resume, start and go_home continue
  the current reference; resume, start and go_home refuse while the arm does not follow it
  (tracking error), so after a tracking-error estop the way out is reset (hold), disable,
  fix the arm, resync (if its controller was restarted) and enable.
* enable from DISABLED starts where the controller is: at the last command sent, which the
  controller still holds (refused if the arm is not within ``resync_tolerance`` of it; in dry
  run the simulated arm is always there), or, when
  nothing was sent yet or after :meth:`resync`, at the measured position, which must be inside
  the soft limits, with the tool inside the workspace box, and at rest (the joint states of the
  last ``REST_WINDOW_S`` agree within ``rest_tolerance``, so a single spiked sample is not
  adopted). A state the limits do not allow is refused with the reason; nothing is sent.
* Each Command's trajectory ends at rest (``trajectory_points`` >= 2): a controller that stops
  receiving messages comes to a smooth stop.
* ``tick`` never raises: an internal error latches ESTOP and the reference brakes.

Delta chunks (JOINT_DELTA, EEF_DELTA) are integrated from the joint state at their stamp (the
observation time; see scheduler.py): the core keeps a time-ordered log of the measured joint states
covering ``limits.chunk_max_age`` (plus margin) and interpolates it at the stamp; in dry run, where
the arm does not move, it logs and interpolates its own simulated reference instead. A delta chunk
with no sample within ``limits.joint_state_timeout`` of its stamp is rejected (it cannot be anchored).
"""

from __future__ import annotations

import collections
import enum
import functools
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from .chunk import EEF_DELTA, JOINT_DELTA, Chunk  # Chunk: re-exported for the ROS node
from .gripper import GripperBinarizer, GripperEvent
from .kinematics import FrankaKinematics, ToolOffset
from .limits import RobotLimits
from .safety import FilterOutput, SafetyFilter
from .scheduler import AddResult, ActionScheduler, PreparedChunk

REST_WINDOW_S = 0.2  # s of joint states that must agree before enable adopts the measured position
REST_MIN_SAMPLES = 3
ANCHOR_MARGIN_S = 0.5  # s kept in the anchor logs beyond chunk_max_age + joint_state_timeout
ANCHOR_MAX_SAMPLES = 8192  # cap of each anchor log (a 1 kHz joint state topic fills ~2 s of it)
QUEUE_EMPTY = "queue empty"  # hold reasons of a RUNNING core that merely has no chunk start with this

__all__ = ["QUEUE_EMPTY", "Chunk", "Command", "ExecutorCore", "ExecutorState", "ExecutorStatus", "TrajectoryPoint",
           "joint_state_age_ok", "reorder_joint_state"]


class ExecutorState(str, enum.Enum):
    DISABLED = "disabled"
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    HOMING = "homing"
    STOPPING = "stopping"
    ESTOP = "estop"


@dataclass(frozen=True)
class TrajectoryPoint:
    """One JointTrajectoryPoint: positions (rad), velocities (rad/s), accelerations (rad/s^2),
    time_from_start (s, relative to Command.stamp)."""

    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    time_from_start: float


@dataclass(frozen=True)
class Command:
    """What to send this tick.

    stamp: the tick time ``now`` (s); use it (or zero = "start now") as the trajectory header stamp.
    joint_names: controller joint names. positions/velocities/accelerations: the filtered
    reference for ``stamp + time_from_start`` (forward position controller: send ``positions``).
    points: 1-3 trajectory points for a JointTrajectoryController (the first equals the fields
    above; later ones, if configured, are the braking continuation so the trajectory ends at rest).
    holding: the arm is stopping/stopped rather than tracking a target (hold_reason says why
    when a target was rejected). dry_run: do NOT send to the controller (visualise only).
    gripper_event: send one gripper goal (Move to open / Grasp to close) when not None.
    """

    stamp: float
    joint_names: tuple[str, ...]
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    time_from_start: float
    points: tuple[TrajectoryPoint, ...]
    holding: bool
    hold_reason: Optional[str]
    dry_run: bool
    gripper_event: Optional[GripperEvent] = None


@dataclass(frozen=True)
class ExecutorStatus:
    """Snapshot for diagnostics / status topics. Times in s."""

    state: str
    dry_run: bool
    holding: bool
    hold_reason: Optional[str]
    queue_depth: int
    queue_remaining_s: float
    needs_chunk: bool
    chunks_accepted: int
    chunks_rejected: int
    last_chunk_latency: Optional[float]
    last_chunk_reject_reason: Optional[str]
    clip_counts: dict
    last_safety_event: Optional[str]
    estop_reason: Optional[str]
    at_start_pose: Optional[bool]
    joint_state_age: Optional[float]
    gripper_state: Optional[str]
    message: str = ""
    extra: dict = field(default_factory=dict)


def reorder_joint_state(names: Sequence[str], positions: Sequence[float], joint_names: Sequence[str]) -> Optional[np.ndarray]:
    """Pick ``joint_names`` out of a JointState's (names, positions); None if any is missing."""
    index = {n: i for i, n in enumerate(names)}
    try:
        return np.array([positions[index[j]] for j in joint_names], dtype=float)
    except (KeyError, IndexError):
        return None


def joint_state_age_ok(stamp: Optional[float], now: float, timeout: float) -> bool:
    """A joint state received at ``stamp`` is fresh at ``now``: |now - stamp| <= timeout (a stamp
    from the future is as suspect as an old one: it would otherwise stay "fresh" for ever)."""
    if stamp is None:
        return False
    age = now - stamp
    return bool(math.isfinite(age) and -timeout <= age <= timeout)


def _log_sample(log: collections.deque, stamp: float, q: np.ndarray) -> None:
    """Insert (stamp, q) into a log sorted by stamp (a late sample is put in its place; a sample at
    the stamp of the newest one replaces it); the oldest samples go beyond ANCHOR_MAX_SAMPLES."""
    entry = (float(stamp), np.array(q, dtype=float))
    if not log or entry[0] > log[-1][0]:
        log.append(entry)
    elif entry[0] == log[-1][0]:
        log[-1] = entry
    else:
        k = len(log)
        while k > 0 and log[k - 1][0] > entry[0]:
            k -= 1
        log.insert(k, entry)
    while len(log) > ANCHOR_MAX_SAMPLES:
        log.popleft()


def _trim_log(log: collections.deque, now: float, window: float) -> None:
    """Drop samples older than ``now - window`` and those stamped more than ``window`` ahead of ``now``
    (a clock that jumped back, a bogus stamp)."""
    while log and log[0][0] < now - window:
        log.popleft()
    while log and log[-1][0] > now + window:
        log.pop()


def _interpolate_log(log: collections.deque, stamp: float, now: float, tolerance: float) -> Optional[np.ndarray]:
    """State at ``stamp`` from a sorted (stamp, q) log: linear interpolation between the samples either
    side when both lie within ``tolerance`` (s) of it, else the nearer one within ``tolerance``; None if
    there is none. Samples stamped after ``now`` (from the future) are not used."""
    before = after = None
    for entry in reversed(log):  # newest first: a chunk's stamp is recent
        t = entry[0]
        if t > now + 1e-9:
            continue
        if t >= stamp:
            after = entry
        else:
            before = entry
            break
    near = [e for e in (before, after) if e is not None and abs(e[0] - stamp) <= tolerance]
    if not near:
        return None
    if len(near) == 2 and after[0] > before[0]:
        w = (stamp - before[0]) / (after[0] - before[0])
        return before[1] + w * (after[1] - before[1])
    return min(near, key=lambda e: abs(e[0] - stamp))[1].copy()


def _locked(method):
    """Run a public ExecutorCore method under the instance lock (ROS callbacks may be threaded)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class ExecutorCore:
    """Glue of scheduler, safety filter and gripper binariser behind a small state machine.

    limits: RobotLimits (dt = limits.control_dt unless ``dt`` is given).
    blend_mode, crossfade_steps, ensemble_decay, refill_threshold_s: see ActionScheduler.
    require_start_pose: enable/start only within ``limits.start_tolerance`` of the start pose.
    dry_run: compute commands as usual but mark them ``dry_run`` and simulate perfect tracking
        (the reference, not the robot, is used as the measured state by the safety checks).
    gripper_open_threshold, gripper_close_threshold: hysteresis of the binariser.
    home_tolerance: go_home is done when every joint is within this (rad) and at rest.
    max_tracking_error: |reference - measured| (rad) that latches ESTOP while moving; None =
        limits.max_jump_rad; 0 disables the check.
    trajectory_points: 1..3 points per Command: the next reference point, then (2, 3) a smooth
        stop to rest (3: with its midpoint).
    rest_tolerance: enable adopts a measured position only if the joint states of the last
        REST_WINDOW_S agree within this (rad).
    resync_tolerance: enable after a disable continues from the last command only if the arm is
        within this (rad) of it; otherwise it refuses (see resync).
    finish_distance: when the queue runs dry, the arm comes to rest at the last queued target if
        the reference is within this distance (rad, every joint) of it, else it brakes at once.
    eef_keep_in_workspace: EEF-delta rows stop ``eef_workspace_margin_m`` inside the workspace box along each
        axis that would leave it (a chunk leaning into the table slides along the floor); False: rows as
        given, and a target outside the box makes the safety filter hold. Either way no target outside the box
        is ever commanded.

    Public methods are serialised by an internal re-entrant lock, so ROS callbacks may run in
    different threads (an EEF_DELTA chunk's IK, ~3 ms for 8 rows, then delays one tick).
    """

    def __init__(
        self,
        limits: RobotLimits,
        dt: Optional[float] = None,
        blend_mode: str = "crossfade",
        crossfade_steps: int = 4,
        ensemble_decay: float = 0.01,
        refill_threshold_s: float = 0.3,
        require_start_pose: bool = True,
        dry_run: bool = False,
        gripper_open_threshold: float = 0.3,
        gripper_close_threshold: float = 0.7,
        home_tolerance: float = 1e-3,
        max_tracking_error: Optional[float] = None,
        trajectory_points: int = 1,
        finish_distance: float = 0.05,
        rest_tolerance: float = 0.005,
        resync_tolerance: float = 0.02,
        eef_keep_in_workspace: bool = True,
        eef_workspace_margin_m: float = 0.01,
    ):
        if not (math.isfinite(eef_workspace_margin_m) and 0.0 <= eef_workspace_margin_m <= 0.1):
            raise ValueError(f"eef_workspace_margin_m: must be in [0, 0.1] m, got {eef_workspace_margin_m}")
        if not 1 <= int(trajectory_points) <= 3:
            raise ValueError(f"trajectory_points: must be 1..3, got {trajectory_points}")
        self.limits = limits
        self.joint_names = tuple(limits.joint_names)
        self.kinematics = FrankaKinematics(ToolOffset(limits.flange_length_m, limits.tcp_offset_m, limits.tool_yaw_rad))
        self.filter = SafetyFilter(limits, dt=dt, kinematics=self.kinematics)
        self.dt = self.filter.dt
        self.scheduler = ActionScheduler(
            self.joint_names, blend_mode=blend_mode, crossfade_steps=crossfade_steps,
            ensemble_decay=ensemble_decay, refill_threshold_s=refill_threshold_s,
            chunk_max_age=limits.chunk_max_age, kinematics=self.kinematics,
            q_min=limits.soft_q_min, q_max=limits.soft_q_max,
            # EEF-delta rows stop eef_workspace_margin_m inside the box, so that the filter's prediction of a
            # stop from the moving arm (which holds when it would end outside) stays inside too
            eef_workspace=(np.asarray(limits.workspace_min, float) + eef_workspace_margin_m,
                           np.asarray(limits.workspace_max, float) - eef_workspace_margin_m)
            if eef_keep_in_workspace else None)
        self.gripper = GripperBinarizer(gripper_open_threshold, gripper_close_threshold)
        p = self.kinematics.fk_position(limits.start_pose)
        if np.any(p < limits.workspace_min) or np.any(p > limits.workspace_max):
            raise ValueError(f"start_pose: tool point {p.round(3).tolist()} lies outside the workspace box")
        self.require_start_pose = bool(require_start_pose)
        self.dry_run = bool(dry_run)
        self.home_tolerance = float(home_tolerance)
        self.max_tracking_error = float(limits.max_jump_rad if max_tracking_error is None else max_tracking_error)
        self.trajectory_points = int(trajectory_points)
        if not finish_distance >= 0:
            raise ValueError(f"finish_distance: must be >= 0 rad, got {finish_distance}")
        self.finish_distance = float(finish_distance)
        for key, value in (("rest_tolerance", rest_tolerance), ("resync_tolerance", resync_tolerance)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key}: must be > 0 rad, got {value}")
        self.rest_tolerance = float(rest_tolerance)
        self.resync_tolerance = float(resync_tolerance)

        self._lock = threading.RLock()
        self.state = ExecutorState.DISABLED
        self._active = False  # commands are being sent (enabled and not yet back to DISABLED)
        self.measured_q: Optional[np.ndarray] = None
        self.measured_stamp: Optional[float] = None
        self._history: collections.deque = collections.deque(maxlen=64)  # (stamp, q) for the rest check
        # Anchors of delta chunks (joint state at a chunk's stamp): time-sorted (stamp, q) logs of the
        # measured states and, for dry run, of the simulated reference; trimmed by time in tick.
        self._anchor_window = float(limits.chunk_max_age) + float(limits.joint_state_timeout) + ANCHOR_MARGIN_S
        self._measured_log: collections.deque = collections.deque()
        self._reference_log: collections.deque = collections.deque()
        # The controller holds the last command sent (True from the first command on, until resync):
        # a later enable must continue from it.
        self._controller_holds_reference = False
        self._last_command_time: Optional[float] = None  # `now` of the last Command returned
        self._disabling = False  # an estop came while STOPPING: its reset continues the disable
        self._nets_seen = 0  # position_net interventions already answered with an estop
        self._queue_epoch = 0  # incremented whenever the queue is cleared (chunks in conversion are void)
        self.estop_reason: Optional[str] = None
        self.message = ""
        self.chunks_accepted = 0
        self.chunks_rejected = 0
        self.last_chunk: Optional[AddResult] = None
        self.last_output: Optional[FilterOutput] = None
        # Last target taken from the queue: when the queue runs dry the arm comes to rest there
        # (the end of the last chunk) instead of braking wherever the lagging reference happens
        # to be, which would overshoot the commanded motion.
        self._last_target: Optional[np.ndarray] = None

    def _settled_at(self, target: np.ndarray) -> bool:
        q, v = self.filter.q, self.filter.v
        return bool(np.max(np.abs(target - q)) < 1e-5 and np.max(np.abs(v)) < 1e-4)

    def _clear_queue(self) -> None:
        """Drop all queued actions; the next hold brakes at the current reference."""
        self.scheduler.clear()
        self._last_target = None
        self._queue_epoch += 1

    # ---- inputs --------------------------------------------------------------------------
    @_locked
    def on_joint_state(self, q: Sequence[float], stamp: float) -> bool:
        """Measured joint positions (rad, controller order) taken at ``stamp`` (s).

        Returns False (and ignores it) if malformed. In dry_run the safety filter keeps using
        the simulated reference; the measurement still drives the start-pose gate.
        """
        try:
            arr = np.asarray(q, dtype=float)
            stamp = float(stamp)
        except (TypeError, ValueError):
            arr, stamp = None, float("nan")
        if (arr is None or arr.shape != (len(self.joint_names),) or not np.all(np.isfinite(arr))
                or not np.isfinite(stamp)):
            self.filter.set_measured(np.full(1, np.nan), stamp)  # records the invalid state
            return False
        self.measured_q = arr.copy()
        self.measured_stamp = float(stamp)
        self._history.append((float(stamp), arr.copy()))
        _log_sample(self._measured_log, stamp, arr)
        if not self.dry_run or not self.filter.initialized:
            self.filter.set_measured(arr, stamp)
        return True

    def on_chunk(self, chunk: Chunk, now: float) -> AddResult:
        """Queue a chunk (accepted only while RUNNING). Returns the scheduler's AddResult.

        A chunk without rows (horizon 0) is a stop request, honoured in every state regardless
        of its stamp: the queue is dropped and the arm holds (the state does not change).
        The conversion (IK for EEF_DELTA rows) runs outside the lock, so a caller in another
        thread never delays a control tick; a chunk whose queue was cleared meanwhile (pause,
        stop, estop, ...) is rejected.
        """
        with self._lock:
            if chunk.is_stop:
                self._clear_queue()
                result = AddResult(True, "stop chunk: queue cleared, holding", float("nan"),
                                   sequence=int(getattr(chunk, "sequence", 0) or 0))
                self.last_chunk = result
                self.message = result.reason
                return result
            if self.state != ExecutorState.RUNNING:
                try:
                    latency = now - float(chunk.stamp)
                except (TypeError, ValueError):
                    latency = float("nan")
                return self._count(AddResult(False, f"executor is {self.state.value}, not running", latency,
                                             sequence=int(getattr(chunk, "sequence", 0) or 0)))
            reference, problem = self._anchor(chunk, now)
            epoch = self._queue_epoch
        # no lock: may run IK
        prepared = self.scheduler.prepare_chunk(chunk, now, reference_q=reference, reference_problem=problem)
        with self._lock:
            if isinstance(prepared, PreparedChunk):
                if self.state != ExecutorState.RUNNING or epoch != self._queue_epoch:
                    prepared = AddResult(False, "the queue was cleared while the chunk was converted",
                                         prepared.latency, sequence=prepared.sequence)
                else:
                    prepared = self.scheduler.commit(prepared, now)
            return self._count(prepared)

    def _anchor(self, chunk: Chunk, now: float) -> tuple[Optional[np.ndarray], Optional[str]]:
        """(joint state at the stamp of a delta chunk, None) or (None, why there is none); (None, None)
        for other chunks and for stamps the scheduler rejects anyway."""
        try:
            if chunk.action_space not in (JOINT_DELTA, EEF_DELTA):
                return None, None
            stamp = float(chunk.stamp)
        except (TypeError, ValueError):
            return None, None
        if not (math.isfinite(stamp) and math.isfinite(now)):
            return None, None
        tolerance = self.limits.joint_state_timeout
        log = self._reference_log if self.dry_run else self._measured_log
        q = _interpolate_log(log, stamp, now, tolerance)
        if q is not None and q.shape == (len(self.joint_names),) and np.all(np.isfinite(q)):
            return q, None
        what = "simulated reference (dry run)" if self.dry_run else "joint state"
        return None, (f"no {what} within {tolerance:.3f} s of the observation stamp {stamp:.3f}: "
                      "cannot anchor the deltas")

    def _log_reference(self, now: float) -> None:
        """Dry run: the simulated arm is at the reference; log it as the anchor of delta chunks."""
        q = self.filter.q
        if q is not None and math.isfinite(now) and np.all(np.isfinite(q)):
            _log_sample(self._reference_log, now, q)

    def _count(self, result: AddResult) -> AddResult:
        if result.accepted:
            self.chunks_accepted += 1
        else:
            self.chunks_rejected += 1
        self.last_chunk = result
        return result

    @_locked
    def reject_unparsable_chunk(self, reason: str, sequence: int = 0) -> AddResult:
        """A chunk message that could not even be turned into a Chunk: counted and reported like any
        other rejection (the queue is untouched)."""
        self.chunks_rejected += 1
        self.last_chunk = AddResult(False, reason, float("nan"), sequence=int(sequence))
        return self.last_chunk

    # ---- state machine ---------------------------------------------------------------------
    def _fresh_state(self, now: float) -> bool:
        return joint_state_age_ok(self.measured_stamp, now, self.limits.joint_state_timeout)

    def _tracking_error(self) -> tuple[float, str]:
        """max |reference - measured| (rad) and the joint's name (0 in dry run)."""
        if self.dry_run or self.measured_q is None or not self.filter.initialized:
            return 0.0, ""
        err = np.abs(self.filter.q - self.measured_q)
        k = int(np.argmax(err))
        return float(err[k]), self.joint_names[k]

    def _follow_gate(self, action: str) -> Optional[str]:
        """Refusal reason when the arm does not follow the reference (see max_tracking_error)."""
        err, joint = self._tracking_error()
        if self.max_tracking_error > 0 and err > self.max_tracking_error:
            return (f"cannot {action}: the arm does not follow the commands ({joint} is {err:.3f} rad from the "
                    f"reference > max tracking error {self.max_tracking_error:.3f}); check the arm and its "
                    "controller, then disable, ~/resync once the controller holds the arm's position, and enable")
        return None

    def _measured_start_problem(self, now: float) -> Optional[str]:
        """Why the measured position cannot be where the commands start (None: it can)."""
        q = self.measured_q
        lo, hi = self.limits.soft_q_min, self.limits.soft_q_max
        outside = np.nonzero((q < lo) | (q > hi))[0]
        if outside.size:
            k = int(outside[0])
            return (f"refused: measured {self.joint_names[k]} = {q[k]:.4f} rad lies outside the range the robot file "
                    f"{self.limits.name!r} allows, [{lo[k]:.4f}, {hi[k]:.4f}] (hardware limits minus position_margin "
                    f"{self.limits.position_margin[k]:.3f}); check that the robot file matches this arm (e.g. fr3 vs "
                    "panda), or move the joint inside by hand; nothing was sent")
        p = self.kinematics.fk_position(q)
        if np.any(p < self.limits.workspace_min) or np.any(p > self.limits.workspace_max):
            return (f"refused: the tool point {np.round(p, 3).tolist()} of the measured joints lies outside the "
                    f"workspace box {list(self.limits.workspace_min)}..{list(self.limits.workspace_max)} of robot "
                    f"file {self.limits.name!r}; move the arm inside by hand; nothing was sent")
        recent = [sample for stamp, sample in self._history if now - REST_WINDOW_S <= stamp <= now + REST_WINDOW_S]
        if len(recent) < REST_MIN_SAMPLES:
            return (f"refused: need {REST_MIN_SAMPLES} joint states within {REST_WINDOW_S:.1f} s to confirm the arm "
                    f"is at rest, have {len(recent)}; try again (is the joint state topic publishing?)")
        spread = np.ptp(np.array(recent), axis=0)
        k = int(np.argmax(spread))
        if spread[k] > self.rest_tolerance:
            return (f"refused: the joint states of the last {REST_WINDOW_S:.1f} s disagree by {spread[k]:.4f} rad on "
                    f"{self.joint_names[k]} (> rest tolerance {self.rest_tolerance}): the arm is moving or its "
                    "sensor spiked; try again when it rests")
        return None

    @_locked
    def at_start_pose(self) -> Optional[bool]:
        """True if the measured state is within start_tolerance of the start pose (None: no state)."""
        if self.measured_q is None:
            return None
        return bool(np.max(np.abs(self.measured_q - self.limits.start_pose)) <= self.limits.start_tolerance)

    def _refuse(self, message: str) -> tuple[bool, str]:
        self.message = message
        return False, message

    def _ok(self, message: str) -> tuple[bool, str]:
        self.message = message
        return True, message

    def _start_gate(self) -> Optional[str]:
        if not self.require_start_pose:
            return None
        if self.at_start_pose():
            return None
        err = np.max(np.abs(self.measured_q - self.limits.start_pose))
        return (f"not at the start pose (max joint error {err:.3f} rad > {self.limits.start_tolerance:.3f}); "
                "call go_home first")

    @_locked
    def enable(self, now: float) -> tuple[bool, str]:
        """Take control where the controller is (see the module docstring); needs a fresh joint state."""
        if self.state == ExecutorState.ESTOP:
            return self._refuse("estop is latched: reset first")
        if self.state not in (ExecutorState.DISABLED, ExecutorState.STOPPING):
            return self._refuse(f"already enabled ({self.state.value})")
        if not self._fresh_state(now):
            return self._refuse("no fresh joint state: cannot enable")
        if self.state == ExecutorState.DISABLED:
            if self._controller_holds_reference and self.filter.initialized:
                err = np.zeros(len(self.joint_names)) if self.dry_run else np.abs(self.measured_q - self.filter.q)
                k = int(np.argmax(err))
                if err[k] > self.resync_tolerance:
                    return self._refuse(
                        f"refused: the arm is {err[k]:.3f} rad ({self.joint_names[k]}) from the last command sent "
                        f"(> resync tolerance {self.resync_tolerance}), which the controller may still hold, so "
                        "starting at the measured position could be a step; if the controller was restarted at "
                        "the arm's position (e.g. after a reflex or a simulation reset) call ~/resync, then enable")
                self.filter.set_measured(self.measured_q, self.measured_stamp)
            else:
                problem = self._measured_start_problem(now)
                if problem is not None:
                    return self._refuse(problem)
                self.filter.reset(self.measured_q)
                self._reference_log.clear()  # (dry run) the simulated arm starts anew at the measured position
        self._active = True
        self.filter.set_measured(self.measured_q, self.measured_stamp)
        self._clear_queue()
        self.scheduler.reset_ordering()
        if self.dry_run:
            self._log_reference(now)
        gate = self._start_gate()
        if gate is not None:
            self.state = ExecutorState.IDLE
            return self._ok(f"enabled and holding: {gate}")
        self.state = ExecutorState.RUNNING
        return self._ok("enabled and running")

    @_locked
    def resync(self) -> tuple[bool, str]:
        """DISABLED only: forget the last command sent (the controller was restarted where the arm
        is), so that the next enable starts from the measured position; and the gripper state (a
        simulation reset reopens the gripper): the next gripper value is an event."""
        if self.state != ExecutorState.DISABLED:
            return self._refuse(f"resync needs state disabled, state is {self.state.value}")
        self._controller_holds_reference = False
        self.gripper.reset()
        return self._ok("resynced: the next enable starts from the measured position")

    @_locked
    def start(self, now: float) -> tuple[bool, str]:
        """IDLE -> RUNNING (follow the policy), subject to the start-pose gate."""
        if self.state != ExecutorState.IDLE:
            return self._refuse(f"start needs state idle, state is {self.state.value}")
        if not self._fresh_state(now):
            return self._refuse("no fresh joint state: cannot start")
        gate = self._start_gate() or self._follow_gate("start")
        if gate is not None:
            return self._refuse(gate)
        self._clear_queue()
        self.state = ExecutorState.RUNNING
        return self._ok("running")

    @_locked
    def pause(self) -> tuple[bool, str]:
        """RUNNING -> PAUSED: drop the queue and stop smoothly."""
        if self.state != ExecutorState.RUNNING:
            return self._refuse(f"pause needs state running, state is {self.state.value}")
        self._clear_queue()
        self.state = ExecutorState.PAUSED
        return self._ok("paused")

    @_locked
    def resume(self) -> tuple[bool, str]:
        """PAUSED -> RUNNING (new chunks are accepted again)."""
        if self.state != ExecutorState.PAUSED:
            return self._refuse(f"resume needs state paused, state is {self.state.value}")
        gate = self._follow_gate("resume")
        if gate is not None:
            return self._refuse(gate)
        self._clear_queue()
        self.state = ExecutorState.RUNNING
        return self._ok("running")

    @_locked
    def stop(self) -> tuple[bool, str]:
        """RUNNING/PAUSED/HOMING -> IDLE: drop the queue and stop smoothly."""
        if self.state not in (ExecutorState.RUNNING, ExecutorState.PAUSED, ExecutorState.HOMING, ExecutorState.IDLE):
            return self._refuse(f"stop is not possible in state {self.state.value}")
        self._clear_queue()
        self.state = ExecutorState.IDLE
        return self._ok("stopped (holding)")

    @_locked
    def go_home(self) -> tuple[bool, str]:
        """Move to the start pose through the safety filter (then IDLE)."""
        if self.state not in (ExecutorState.IDLE, ExecutorState.RUNNING, ExecutorState.PAUSED):
            return self._refuse(f"go_home is not possible in state {self.state.value}")
        gate = self._follow_gate("go home")
        if gate is not None:
            return self._refuse(gate)
        self._clear_queue()
        self.state = ExecutorState.HOMING
        return self._ok("homing")

    @_locked
    def disable(self) -> tuple[bool, str]:
        """Stop smoothly, then send nothing (STOPPING -> DISABLED once at rest)."""
        if self.state == ExecutorState.ESTOP:
            return self._refuse("estop is latched: reset first")
        if self.state == ExecutorState.DISABLED:
            return self._ok("already disabled")
        self._clear_queue()
        if self.filter.is_stopped:
            self.state = ExecutorState.DISABLED
            self._active = False
        else:
            self.state = ExecutorState.STOPPING
        return self._ok("disabling")

    @_locked
    def estop(self, reason: str = "estop requested") -> tuple[bool, str]:
        """Latch ESTOP from any state: queue dropped, smooth stop, only reset() leaves it."""
        self._clear_queue()
        self.estop_reason = reason
        if self.state != ExecutorState.ESTOP:
            self._disabling = self.state == ExecutorState.STOPPING
        if not self._active:
            self.state = ExecutorState.ESTOP
            return self._ok(f"estop latched (nothing is being sent): {reason}")
        self.state = ExecutorState.ESTOP
        return self._ok(f"estop latched: {reason}")

    @_locked
    def reset(self, now: float) -> tuple[bool, str]:
        """Clear a latched ESTOP -> IDLE (holding; call start or go_home next), or -> DISABLED
        if the estop came while nothing was being sent."""
        if self.state != ExecutorState.ESTOP:
            return self._refuse(f"reset needs state estop, state is {self.state.value}")
        if not self._active:
            self.estop_reason = None
            self.state = ExecutorState.DISABLED
            return self._ok("estop reset: disabled")
        if not self._fresh_state(now):
            return self._refuse("no fresh joint state: cannot reset estop")
        # The reference is never re-based here: commands kept flowing during the estop and the
        # controller holds the last one. (start / go_home refuse while the arm does not follow it.)
        self.filter.set_measured(self.measured_q, self.measured_stamp)
        self.estop_reason = None
        self._clear_queue()
        self.scheduler.reset_ordering()
        if self._disabling:  # the estop interrupted a disable: finish it (enable is needed again)
            self.state = ExecutorState.STOPPING
            return self._ok("estop reset: disabling")
        self.state = ExecutorState.IDLE
        return self._ok("estop reset: idle")

    # ---- control tick ------------------------------------------------------------------------
    @_locked
    def tick(self, now: float) -> Optional[Command]:
        """One control period: returns the Command to send, or None while DISABLED.

        Never raises: an internal error latches ESTOP and the reference brakes (if even that
        fails, None: the controller finishes the last trajectory, which ends at rest)."""
        try:
            command = self._tick(now)
        except Exception as exc:  # noqa: BLE001 - a control tick must not raise
            self.estop(f"internal error in tick: {exc!r}")
            try:
                command = self._command(now, self.filter.hold(now), None)
            except Exception:  # noqa: BLE001
                return None
        if command is not None:  # (in dry run: the simulated controller that the dry-run stream shows)
            self._controller_holds_reference = True
        self._last_command_time = None if command is None else float(now)
        return command

    def _tick(self, now: float) -> Optional[Command]:
        _trim_log(self._measured_log, now, self._anchor_window)
        _trim_log(self._reference_log, now, self._anchor_window)
        state = self.state
        if state == ExecutorState.DISABLED or not self._active:
            return None
        if self._last_command_time is not None:
            # A late tick (the process stalled, a /clock message was lost): the controller went on
            # with the last message, reached its first point and followed its stop. Continue from
            # there, so the next command is continuous with what the arm was actually sent.
            # (whole microseconds: at ROS epoch times, ~1.7e9 s, a float difference carries ~0.2 us of noise)
            late = round((now - self._last_command_time - self.dt) * 1e6) * 1e-6
            if late > 0.5 * self.dt:
                self.filter.follow_stop(late, self.trajectory_points >= 2, now)
        if self.dry_run:
            self.filter.set_measured(self.filter.q, now)
            self._log_reference(now)
        gripper_value = None
        if state == ExecutorState.RUNNING:
            sample = self.scheduler.sample(now)
            if sample is not None:
                self._last_target = sample.positions
            elif self._last_target is not None and (
                    self._settled_at(self._last_target)
                    or np.max(np.abs(self._last_target - self.filter.q)) > self.finish_distance):
                # Arrived (from here on an exact hold), or the reference lags too far behind the
                # commands to finish them after the policy fell silent: brake where it is.
                self._last_target = None
            out = self.filter.step(self._last_target, now)
            if sample is None:
                out = replace(out, holding=True)  # queue empty: finishing the last motion, then holding
            if sample is not None and out.hold_reason is None:
                gripper_value = sample.gripper
            elif out.hold_reason is not None:
                self._last_target = None  # a rejected target is never resumed
        elif state == ExecutorState.HOMING:
            # Waypoint toward home at most half the jump threshold ahead of the reference, so
            # the jump-from-measured and workspace checks stay active on the way.
            reach = 0.5 * self.limits.max_jump_rad
            waypoint = self.filter.q + np.clip(self.limits.start_pose - self.filter.q, -reach, reach)
            out = self.filter.step(waypoint, now)
            if (np.max(np.abs(out.position - self.limits.start_pose)) <= self.home_tolerance
                    and np.max(np.abs(out.velocity)) < 1e-3):
                self.state = ExecutorState.IDLE
                self.message = "home reached"
        else:  # IDLE, PAUSED, STOPPING, ESTOP: smooth stop, then stay
            out = self.filter.step(None, now)
            if state == ExecutorState.STOPPING and self.filter.is_stopped:
                self.state = ExecutorState.DISABLED
                self._active = False
                self.message = "disabled"
        self.last_output = out
        if self.filter.last_event is not None and "position_net" in self.filter.last_event and \
                self.state != ExecutorState.ESTOP and self.filter.clip_counts["position_net"] != self._nets_seen:
            self.estop("the reference reached a hardware position limit (safety net acted)")
        self._nets_seen = self.filter.clip_counts["position_net"]
        if state in (ExecutorState.RUNNING, ExecutorState.HOMING) and self.max_tracking_error > 0 \
                and self._fresh_state(now):
            err, joint = self._tracking_error()
            if err > self.max_tracking_error:
                self.estop(f"tracking error {err:.3f} rad on {joint} > {self.max_tracking_error:.3f} rad")
        event = None
        if gripper_value is not None and self.state == ExecutorState.RUNNING:  # never on an estop tick
            event = self.gripper.update(gripper_value, now)
        return self._command(now, out, event)

    def _command(self, now: float, out: FilterOutput, event: Optional[GripperEvent]) -> Command:
        points = [TrajectoryPoint(out.position, out.velocity, out.acceleration, self.dt)]
        if self.trajectory_points > 1:
            for t, q, v, a in self.filter.stop_points(self.trajectory_points - 1):
                points.append(TrajectoryPoint(q, v, a, self.dt + t))
        return Command(now, self.joint_names, out.position, out.velocity, out.acceleration, self.dt,
                       tuple(points), out.holding, out.hold_reason, self.dry_run, event)

    # ---- diagnostics ---------------------------------------------------------------------------
    @_locked
    def status(self, now: float) -> ExecutorStatus:
        """Snapshot of the executor at ``now`` (s)."""
        last = self.last_chunk
        rejected_reason = None
        if last is not None and not last.accepted:
            rejected_reason = last.reason
        out = self.last_output
        # DISABLED sends nothing: holding (whatever the last command was); not yet ticked: holding
        holding = True if out is None or self.state == ExecutorState.DISABLED else bool(out.holding)
        return ExecutorStatus(
            state=self.state.value,
            dry_run=self.dry_run,
            holding=holding,
            hold_reason=self._hold_reason(now) if holding else None,
            queue_depth=self.scheduler.depth(now),
            queue_remaining_s=self.scheduler.remaining_time(now),
            needs_chunk=self.state == ExecutorState.RUNNING and self.scheduler.needs_chunk(now),
            chunks_accepted=self.chunks_accepted,
            chunks_rejected=self.chunks_rejected,
            last_chunk_latency=None if last is None else last.latency,
            last_chunk_reject_reason=rejected_reason,
            clip_counts=dict(self.filter.clip_counts),
            last_safety_event=self.filter.last_event,
            estop_reason=self.estop_reason,
            at_start_pose=self.at_start_pose(),
            joint_state_age=None if self.measured_stamp is None else now - self.measured_stamp,
            gripper_state=self.gripper.state,
            message=self.message,
        )

    def _hold_reason(self, now: float) -> str:
        """Why the executor holds (status only; never empty): the latched estop, the safety filter's
        rejection of the last target, or what the state is waiting for."""
        state, out = self.state, self.last_output
        if state == ExecutorState.ESTOP:
            sending = "" if self._active else " (nothing is being sent)"
            return f"estop latched{sending}: {self.estop_reason or 'no reason given'}; call ~/reset"
        kind = None if out is None else out.hold_reason
        if kind is not None and state != ExecutorState.DISABLED:
            return f"{kind}: {self._describe_filter_hold(kind, now)}"
        if state == ExecutorState.DISABLED:
            return "disabled: nothing is sent (call ~/enable)"
        if state == ExecutorState.STOPPING:
            return "disabling: stopping smoothly, then nothing is sent"
        if state == ExecutorState.IDLE:
            gate = self._start_gate() if self.measured_q is not None else None
            return f"idle: {gate}" if gate else "idle: call ~/start (or ~/go_home)"
        if state == ExecutorState.PAUSED:
            return "paused: call ~/resume"
        if state == ExecutorState.RUNNING:
            last = self.last_chunk
            rejected = "" if last is None or last.accepted else f"; last chunk rejected: {last.reason}"
            if self._last_target is not None:
                return f"{QUEUE_EMPTY}: finishing the last chunk's motion, waiting for a chunk{rejected}"
            return f"{QUEUE_EMPTY}: waiting for a chunk from the policy{rejected}"
        return f"{state.value}: holding"

    def _describe_filter_hold(self, kind: str, now: float) -> str:
        if kind == "joint_state_timeout":
            if self.measured_stamp is None:
                return "no joint state received"
            return (f"joint state {now - self.measured_stamp:.3f} s old (timeout "
                    f"{self.limits.joint_state_timeout:.3f} s): is the joint state topic publishing?")
        text = {"invalid_command": "the target was not finite or had the wrong shape",
                "jump_from_measured": "the target is too far from the measured position",
                "workspace": "the target leaves the workspace box"}.get(kind, "target rejected by the safety filter")
        event = self.filter.last_event
        return f"{text} ({event})" if event else text

    @_locked
    def needs_chunk(self, now: float) -> bool:
        """True while RUNNING when the queue runs low: the node should request/await a chunk."""
        return self.state == ExecutorState.RUNNING and self.scheduler.needs_chunk(now)
