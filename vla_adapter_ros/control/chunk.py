"""Plain, ROS-free form of an ``ActionChunk`` message and its conversion to joint targets.

Time convention of the whole control package: **float seconds of ROS time** (the clock the
header stamps use: ``sec + nanosec * 1e-9``, see :func:`stamp_to_seconds`). Float64 resolves
about 0.24 microseconds at today's epoch times, far below a 4 ms control period.

An absolute row ``i`` (JOINT_POSITION) of ``Chunk.actions`` is the target for ``stamp + i * dt``; a
delta row ``i`` (JOINT_DELTA, EEF_DELTA) is the motion over ``[stamp + i dt, stamp + (i + 1) dt]``,
integrated from the joint state at ``stamp`` (see scheduler.py). A chunk with no rows (horizon 0)
is a *stop* request: the executor drops its queue and holds position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .kinematics import FrankaKinematics

# action_space values, identical to the constants of msg/ActionChunk.msg.
JOINT_POSITION = 0  # absolute joint positions (rad)
JOINT_DELTA = 1  # joint increments per step (rad)
EEF_DELTA = 2  # tool delta per step: [dx dy dz (m), drx dry drz axis-angle (rad)], base frame
ACTION_SPACE_NAMES = {JOINT_POSITION: "JOINT_POSITION", JOINT_DELTA: "JOINT_DELTA", EEF_DELTA: "EEF_DELTA"}
EEF_DIM = 6
# Bounds on what one chunk may carry: converting (EEF_DELTA rows run the IK, ~0.3 ms each) and
# merging stay cheap, and a row period is a plausible policy rate.
MAX_CHUNK_ROWS = 128
MIN_CHUNK_DT = 1e-3  # s
MAX_CHUNK_DT = 1.0  # s


def stamp_to_seconds(sec: int, nanosec: int) -> float:
    """ROS ``builtin_interfaces/Time`` fields -> float seconds."""
    return float(sec) + float(nanosec) * 1e-9


@dataclass
class Chunk:
    """One chunk of future actions, filled by the ROS node from ``ActionChunk``.

    stamp: observation time the chunk was computed from (s, ROS time).
    dt: time between consecutive rows (s); a delta row is the motion over one dt.
    action_space: JOINT_POSITION, JOINT_DELTA or EEF_DELTA.
    names: one name per column (joint names; ignored for EEF_DELTA). Empty = controller order.
    actions: (horizon, action_dim) float array, SI units.
    gripper: (horizon,) values 0 = open .. 1 = closed, or None.
    sequence: publisher's running chunk number (informational).
    """

    stamp: float
    dt: float
    action_space: int
    names: Sequence[str]
    actions: np.ndarray
    gripper: Optional[np.ndarray] = None
    sequence: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_stop(self) -> bool:
        """A chunk without rows (horizon 0) means stop: drop the queue and hold."""
        return int(np.size(self.actions)) == 0 and (np.ndim(self.actions) < 2 or np.shape(self.actions)[0] == 0)

    @classmethod
    def from_flat(cls, stamp: float, dt: float, action_space: int, names: Sequence[str], horizon: int,
                  action_dim: int, flat_actions, gripper=None, sequence: int = 0) -> "Chunk":
        """Build from the message layout (row-major ``horizon x action_dim`` flat array).

        Raises ValueError if the flat array does not hold horizon * action_dim values.
        """
        flat = np.asarray(flat_actions, dtype=float).ravel()
        if horizon == 0:  # a stop chunk: no rows
            return cls(float(stamp), float(dt), int(action_space), list(names),
                       np.zeros((0, max(int(action_dim), 0))), None, int(sequence))
        if horizon < 0 or action_dim <= 0 or flat.size != horizon * action_dim:
            raise ValueError(f"actions: {flat.size} values do not form {horizon} x {action_dim}")
        grip = None
        if gripper is not None and len(gripper) > 0:
            grip = np.asarray(gripper, dtype=float).ravel()
        return cls(float(stamp), float(dt), int(action_space), list(names),
                   flat.reshape(horizon, action_dim), grip, int(sequence))


def validate_chunk(chunk: Chunk, joint_names: Sequence[str]) -> tuple[Optional[np.ndarray], Optional[np.ndarray], str]:
    """Check a chunk's shape and values; reorder joint columns to ``joint_names``.

    Returns (actions (H, D), gripper (H,) or None, "") when valid, else (None, None, reason).
    """
    try:
        actions = np.array(chunk.actions, dtype=float)
    except (TypeError, ValueError):
        return None, None, "actions are not numeric"
    if actions.ndim != 2 or actions.shape[0] < 1:
        return None, None, f"actions must be (horizon>=1, dim), got shape {actions.shape}"
    if actions.shape[0] > MAX_CHUNK_ROWS:
        return None, None, f"{actions.shape[0]} rows > {MAX_CHUNK_ROWS} per chunk"
    if not np.all(np.isfinite(actions)):
        return None, None, "actions contain NaN or inf"
    dt = chunk.dt
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and MIN_CHUNK_DT <= dt <= MAX_CHUNK_DT):
        return None, None, f"dt must lie in [{MIN_CHUNK_DT}, {MAX_CHUNK_DT}] s, got {dt!r}"
    if not np.isfinite(chunk.stamp):
        return None, None, "stamp is not finite"
    n = len(joint_names)
    space = chunk.action_space
    if space in (JOINT_POSITION, JOINT_DELTA):
        if actions.shape[1] != n:
            return None, None, f"{ACTION_SPACE_NAMES[space]} needs {n} columns, got {actions.shape[1]}"
        names = list(chunk.names or [])
        if names and names != list(joint_names):
            if sorted(names) != sorted(joint_names):
                return None, None, f"names {names} do not match joints {list(joint_names)}"
            actions = actions[:, [names.index(j) for j in joint_names]]
    elif space == EEF_DELTA:
        if actions.shape[1] != EEF_DIM:
            return None, None, f"EEF_DELTA needs {EEF_DIM} columns, got {actions.shape[1]}"
    else:
        return None, None, f"unknown action_space {space!r}"
    gripper = None
    if chunk.gripper is not None and len(chunk.gripper) > 0:
        gripper = np.array(chunk.gripper, dtype=float).ravel()
        if gripper.shape != (actions.shape[0],):
            return None, None, f"gripper has {gripper.size} values for horizon {actions.shape[0]}"
        if not np.all(np.isfinite(gripper)):
            return None, None, "gripper contains NaN or inf"
    return actions, gripper, ""


def actions_to_joint_targets(
    action_space: int,
    actions: np.ndarray,
    reference_q: np.ndarray,
    kinematics: Optional[FrankaKinematics] = None,
    q_min: Optional[np.ndarray] = None,
    q_max: Optional[np.ndarray] = None,
    workspace: Optional[tuple[np.ndarray, np.ndarray]] = None,
) -> tuple[Optional[np.ndarray], str]:
    """Absolute joint targets (H, n) for validated rows of one action space.

    JOINT_POSITION rows are used as they are. JOINT_DELTA and EEF_DELTA rows are integrated
    step by step starting at ``reference_q`` (rad; the scheduler passes the joint state at the
    chunk's stamp and gives every row): target_i = reference + delta_0 + ... + delta_i, the state
    at the end of row i's period; EEF deltas go through damped-least-squares IK (``kinematics``,
    clamped to q_min/q_max). ``workspace`` (lo, hi) (m, base frame): an EEF-delta row's translation stops
    at this box along each axis that would leave it (the tool point of the previous row's target, or of the
    reference, is never pulled in from outside, only kept from going further out), so a chunk that leans
    into the table slides along the floor instead of being dropped by the safety filter's workspace hold.
    Returns (targets, "") or (None, reason) if the IK does not converge.
    """
    if action_space == JOINT_POSITION:
        return np.array(actions, dtype=float), ""
    ref = np.asarray(reference_q, dtype=float)
    if action_space == JOINT_DELTA:
        return ref[None, :] + np.cumsum(actions, axis=0), ""
    if action_space == EEF_DELTA:
        if kinematics is None:
            return None, "EEF_DELTA needs kinematics"
        out = np.empty((actions.shape[0], ref.size))
        q = ref
        for i, row in enumerate(actions):
            dp = row[:3]
            if workspace is not None:
                p = kinematics.fk_position(q)
                dp = np.clip(p + dp, np.minimum(workspace[0], p), np.maximum(workspace[1], p)) - p
            q, ok = kinematics.ik_delta(q, dp, row[3:6], q_min=q_min, q_max=q_max)
            if not ok:
                return None, f"IK did not converge at step {i}"
            out[i] = q
        return out, ""
    return None, f"unknown action_space {action_space!r}"
