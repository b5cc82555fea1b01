"""How a checkpoint's numbers map to a robot: proprio layout in, action space and gripper out.

The model sees a proprio vector and returns `chunk_len x action_dim` un-normalized actions. What
those numbers mean (joint positions or end-effector deltas, which column is the gripper, which value
means open) is a property of the data the checkpoint was trained on, so it is configured, never
guessed. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import json
from pathlib import Path

import numpy as np

ACTION_SPACES = ("joint_position", "joint_delta", "eef_delta")

# proprio layout name -> (size, description)
PROPRIO_LAYOUTS = {
    "joints": (7, "7 joint positions [rad]"),
    "joints_fingers": (9, "7 joint positions [rad] + 2 finger positions [m]"),
    "joints_gripper_width": (8, "7 joint positions [rad] + gripper opening width [m]"),
    "eef_axisangle_fingers": (8, "EEF position [m] + EEF orientation as axis-angle [rad] + 2 finger positions [m] (LIBERO)"),
}


# LIBERO's OSC_POSE controller takes arm actions in [-1, 1] and scales them by 0.05 m (position)
# and 0.5 rad (axis-angle) per control step: the released checkpoints output these controller units.
# The policy node multiplies by this (action_scale) so ActionChunk carries SI units; the LIBERO
# bridge divides by the same numbers to get controller units back.
LIBERO_ACTION_SCALE = (0.05, 0.05, 0.05, 0.5, 0.5, 0.5)

# What the policy node needs for a released LIBERO checkpoint (IOSpec keyword arguments).
LIBERO_IO = {
    "action_space": "eef_delta",
    "dt": 0.05,  # 20 Hz control
    "gripper_index": 6,
    "gripper_open_value": 1.0,  # training data: gripper clipped to [0, 1] and inverted, 1 = open
    "gripper_closed_value": 0.0,
    "proprio_layout": "eef_axisangle_fingers",
    "action_scale": list(LIBERO_ACTION_SCALE),
}


def quaternion_to_axis_angle(quat_xyzw, shortest: bool = True) -> np.ndarray:
    """Axis-angle vector (rad) of a unit quaternion (x, y, z, w).

    shortest=True flips q to w >= 0 first, so the angle is at most pi (our own datasets).
    shortest=False is robosuite's `quat2axisangle`, which LIBERO's data and evaluation use: the
    angle is 2 acos(w) as given, up to 2 pi, so q and -q give different vectors (the Panda
    gripper pointing down has w close to 0, where the two conventions differ by about 2 pi).
    """
    q = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-9:
        raise IOSpecError("orientation quaternion is zero or non-finite")
    if shortest:
        q = q / norm
        if q[3] < 0:
            q = -q
        s = np.sqrt(max(0.0, 1.0 - q[3] * q[3]))
        return np.zeros(3) if s < 1e-12 else q[:3] / s * (2.0 * np.arctan2(s, q[3]))
    w = float(np.clip(q[3], -1.0, 1.0))  # robosuite: as given, not normalised
    s = np.sqrt(1.0 - w * w)
    return np.zeros(3) if s < 1e-12 else q[:3] * (2.0 * np.arccos(w)) / s


class IOSpecError(ValueError):
    """An inconsistent action/proprio specification."""


@dataclass
class IOSpec:
    action_space: str = "eef_delta"
    dt: float = 0.05  # seconds between chunk steps (LIBERO: 20 Hz)
    action_dim: int = 7  # columns of the model output, gripper included
    gripper_index: int | None = 6  # model-output column of the gripper; None = no gripper
    gripper_open_value: float = 1.0  # model value meaning "open" (LIBERO data: 1 = open)
    gripper_closed_value: float = 0.0
    proprio_layout: str = "eef_axisangle_fingers"
    arm_names: list[str] = field(default_factory=list)  # names of the arm columns (filled if empty)
    # Multiplies each arm column to get SI units (empty = 1). LIBERO's EEF deltas are controller
    # units: 1.0 = 0.05 m and 0.5 rad per step, i.e. [0.05, 0.05, 0.05, 0.5, 0.5, 0.5].
    action_scale: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.action_space not in ACTION_SPACES:
            raise IOSpecError(f"action_space must be one of {ACTION_SPACES}, got {self.action_space!r}")
        if not (self.dt > 0 and np.isfinite(self.dt)):
            raise IOSpecError(f"dt must be a positive number of seconds, got {self.dt}")
        if self.proprio_layout not in PROPRIO_LAYOUTS:
            raise IOSpecError(f"proprio_layout must be one of {sorted(PROPRIO_LAYOUTS)}, got {self.proprio_layout!r}")
        if self.gripper_index is not None:
            if self.gripper_index < 0:
                self.gripper_index += self.action_dim
            if not 0 <= self.gripper_index < self.action_dim:
                raise IOSpecError(f"gripper_index {self.gripper_index} outside 0..{self.action_dim - 1}")
            if self.gripper_open_value == self.gripper_closed_value:
                raise IOSpecError("gripper_open_value and gripper_closed_value must differ")
        arm_dim = self.arm_dim
        expected = 6 if self.action_space == "eef_delta" else None
        if expected is not None and arm_dim != expected:
            raise IOSpecError(f"eef_delta needs 6 arm columns (dx dy dz drx dry drz), the model has {arm_dim}")
        if not self.arm_names:
            if self.action_space == "eef_delta":
                self.arm_names = ["eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz"]
            else:
                self.arm_names = [f"joint{i + 1}" for i in range(arm_dim)]
        if len(self.arm_names) != arm_dim:
            raise IOSpecError(f"{len(self.arm_names)} arm_names for {arm_dim} arm columns")
        if not self.action_scale:
            self.action_scale = [1.0] * arm_dim
        scale = np.asarray(self.action_scale, dtype=np.float64)
        if scale.shape != (arm_dim,) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise IOSpecError(f"action_scale needs {arm_dim} positive numbers, got {self.action_scale}")

    @property
    def arm_dim(self) -> int:
        return self.action_dim - (self.gripper_index is not None)

    @property
    def proprio_dim(self) -> int:
        return PROPRIO_LAYOUTS[self.proprio_layout][0]

    def split(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(chunk x action_dim) model actions -> (chunk x arm_dim arm actions in SI units, gripper
        closure 0..1).

        Closure is 0 for the open value, 1 for the closed value, linear and clipped in between.
        """
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise IOSpecError(f"expected chunk x {self.action_dim} actions, got shape {actions.shape}")
        scale = np.asarray(self.action_scale, dtype=np.float64)
        if self.gripper_index is None:
            return actions * scale, None
        arm = np.delete(actions, self.gripper_index, axis=1) * scale
        raw = actions[:, self.gripper_index]
        closure = (raw - self.gripper_open_value) / (self.gripper_closed_value - self.gripper_open_value)
        return arm, np.clip(closure, 0.0, 1.0)


def build_proprio(
    layout: str,
    joint_positions: np.ndarray,
    finger_positions: np.ndarray | None = None,
    eef_position: np.ndarray | None = None,
    eef_axis_angle: np.ndarray | None = None,
) -> np.ndarray:
    """Assemble the proprio vector of `layout` from robot state; raises IOSpecError if a part is missing."""
    if layout not in PROPRIO_LAYOUTS:
        raise IOSpecError(f"unknown proprio layout {layout!r}")
    q = np.asarray(joint_positions, dtype=np.float64).reshape(-1)
    if q.size != 7:
        raise IOSpecError(f"expected 7 arm joint positions, got {q.size}")

    def need(value, size, what):
        if value is None:
            raise IOSpecError(f"proprio layout {layout!r} needs {what}")
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size != size:
            raise IOSpecError(f"{what}: expected {size} values, got {arr.size}")
        return arr

    if layout == "joints":
        out = q
    elif layout == "joints_fingers":
        out = np.concatenate([q, need(finger_positions, 2, "2 finger positions")])
    elif layout == "joints_gripper_width":
        out = np.concatenate([q, [need(finger_positions, 2, "2 finger positions").sum()]])
    else:  # eef_axisangle_fingers
        out = np.concatenate([
            need(eef_position, 3, "the end-effector position"),
            need(eef_axis_angle, 3, "the end-effector axis-angle orientation"),
            need(finger_positions, 2, "2 finger positions"),
        ])
    if not np.all(np.isfinite(out)):
        raise IOSpecError(f"proprio has non-finite values: {out.tolist()}")
    return out


IO_KEYS = ("action_space", "dt", "gripper_index", "gripper_open_value", "gripper_closed_value", "proprio_layout")


def io_from_checkpoint(checkpoint_dir) -> dict | None:
    """The I/O description our trainer writes next to a checkpoint (`training.json`), as IOSpec
    keyword arguments, or None when the directory has none (e.g. an official release).

    A dataset converted by `vla-adapter-ros convert` is in SI units, so `action_scale` is 1.
    Raises IOSpecError for an unreadable or inconsistent file.
    """
    path = Path(checkpoint_dir) / "training.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IOSpecError(f"{path}: cannot read: {exc}") from exc
    missing = [k for k in ("action_space", "dt", "proprio_layout") if k not in data]
    if missing:
        raise IOSpecError(f"{path}: missing {missing}")
    io = {k: data[k] for k in IO_KEYS if k in data}
    io["action_scale"] = []
    return io
