"""Robot limits for the executor: hardware tables plus the margins used for a learned policy.

Units: rad, rad/s, rad/s^2, rad/s^3, m, s. All per-joint arrays have one entry per joint, in the
order of ``joint_names``. The *effective* limits the safety filter enforces are derived here:

* position: ``[q_min + position_margin, q_max - position_margin]``
* velocity: ``min(dq_max * velocity_scale, max_step_rad / control_dt)``
* acceleration: ``ddq_max * acceleration_scale``; jerk: ``dddq_max * jerk_scale``

Load with :func:`RobotLimits.from_yaml` (or :func:`load_robot_limits` for the bundled
``config/robots/<name>.yaml``). Every problem raises ``ValueError`` naming the offending key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

N_JOINTS = 7

_PER_JOINT_KEYS = ("q_min", "q_max", "dq_max", "ddq_max", "dddq_max")
_CARTESIAN_KEYS = ("cartesian_velocity_max", "cartesian_acceleration_max", "cartesian_jerk_max")


@dataclass(frozen=True)
class RobotLimits:
    """Validated limits of one arm. Arrays are read-only float64 of length ``n_joints``.

    joint_names: controller joint names, e.g. ``fr3_joint1..7`` or ``panda_joint1..7``.
    q_min, q_max: hardware position limits (rad).
    dq_max, ddq_max, dddq_max: hardware velocity (rad/s), acceleration (rad/s^2), jerk (rad/s^3).
    position_margin: distance kept from q_min/q_max (rad, per joint).
    velocity_scale, acceleration_scale, jerk_scale: fractions (0, 1] of the hardware limits.
    max_step_rad: cap on |q_k+1 - q_k| per control step (rad).
    control_dt: control period the filter runs at (s), e.g. 0.004 for 250 Hz.
    workspace_min, workspace_max: axis-aligned box for the tool point, base frame (m).
    start_pose: pose the policy may start from (rad); start_tolerance: max |q - start| (rad).
    max_jump_rad: largest |target - measured| accepted for a command (rad).
    joint_state_timeout: max age of the measured joint state before holding (s).
    chunk_max_age: chunks whose observation stamp is older than this are rejected (s).
    flange_length_m, tcp_offset_m, tool_yaw_rad: tool point for FK (see kinematics.ToolOffset).
    cartesian_velocity_max, cartesian_acceleration_max, cartesian_jerk_max: hardware limits of
        the tool, [translation (m/s, m/s^2, m/s^3), rotation (rad/s, rad/s^2, rad/s^3)]; the
        ``eef_delta`` output enforces them times velocity/acceleration/jerk_scale (optional keys;
        default: the lower of the FR3 and Panda values).
    """

    joint_names: tuple[str, ...]
    q_min: np.ndarray
    q_max: np.ndarray
    dq_max: np.ndarray
    ddq_max: np.ndarray
    dddq_max: np.ndarray
    position_margin: np.ndarray
    velocity_scale: float
    acceleration_scale: float
    jerk_scale: float
    max_step_rad: float
    control_dt: float
    workspace_min: np.ndarray
    workspace_max: np.ndarray
    start_pose: np.ndarray
    start_tolerance: float
    max_jump_rad: float
    joint_state_timeout: float
    chunk_max_age: float
    flange_length_m: float = 0.107
    tcp_offset_m: float = 0.1034
    tool_yaw_rad: float = -math.pi / 4
    cartesian_velocity_max: tuple[float, float] = (1.7, 2.5)
    cartesian_acceleration_max: tuple[float, float] = (9.0, 17.0)
    cartesian_jerk_max: tuple[float, float] = (4500.0, 8500.0)
    name: str = "robot"

    # ---- derived, effective limits -----------------------------------------------------------
    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def soft_q_min(self) -> np.ndarray:
        """Lowest position the filter commands (rad)."""
        return self.q_min + self.position_margin

    @property
    def soft_q_max(self) -> np.ndarray:
        """Highest position the filter commands (rad)."""
        return self.q_max - self.position_margin

    @property
    def v_max(self) -> np.ndarray:
        """Effective velocity bound (rad/s): scaled dq_max, and the per-step cap over dt."""
        return np.minimum(self.dq_max * self.velocity_scale, self.max_step_rad / self.control_dt)

    @property
    def a_max(self) -> np.ndarray:
        """Effective acceleration bound (rad/s^2)."""
        return self.ddq_max * self.acceleration_scale

    @property
    def j_max(self) -> np.ndarray:
        """Effective jerk bound (rad/s^3)."""
        return self.dddq_max * self.jerk_scale

    @property
    def cartesian_v_max(self) -> np.ndarray:
        """Effective tool speed bounds [m/s, rad/s] (vector norms)."""
        return np.array(self.cartesian_velocity_max) * self.velocity_scale

    @property
    def cartesian_a_max(self) -> np.ndarray:
        """Effective tool acceleration bounds [m/s^2, rad/s^2] (vector norms)."""
        return np.array(self.cartesian_acceleration_max) * self.acceleration_scale

    @property
    def cartesian_j_max(self) -> np.ndarray:
        """Effective tool jerk bounds [m/s^3, rad/s^3] (vector norms)."""
        return np.array(self.cartesian_jerk_max) * self.jerk_scale

    # ---- loading -----------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "RobotLimits":
        """Load and validate a robot YAML file (see config/robots/fr3.yaml)."""
        with open(path, "r", encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RobotLimits":
        """Validate a plain mapping (YAML content, or ROS parameters) into RobotLimits."""
        data = dict(data)
        known = {
            "name", "joint_names", *_PER_JOINT_KEYS, "position_margin", "velocity_scale",
            "acceleration_scale", "jerk_scale", "max_step_rad", "control_dt", "workspace_min",
            "workspace_max", "start_pose", "start_tolerance", "max_jump_rad", "joint_state_timeout",
            "chunk_max_age", "flange_length_m", "tcp_offset_m", "tool_yaw_rad",
            *_CARTESIAN_KEYS,
        }
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key (typo?); known keys: {sorted(known)}")

        names = data.get("joint_names")
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError("joint_names: must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise ValueError("joint_names: names must be unique")
        n = len(names)

        def vector(key: str, length: int, allow_scalar: bool, required: bool = True, default=None) -> np.ndarray:
            if key not in data:
                if not required:
                    return np.asarray(default, dtype=float)
                raise ValueError(f"{key}: missing")
            raw = data[key]
            try:
                arr = np.asarray(raw, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: must be numeric, got {raw!r}") from None
            if arr.ndim == 0 and allow_scalar:
                arr = np.full(length, float(arr))
            if arr.shape != (length,):
                raise ValueError(f"{key}: expected {length} values, got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{key}: values must be finite (no NaN/inf), got {arr.tolist()}")
            return arr

        def scalar(key: str, lo: float, hi: float = math.inf, lo_inclusive: bool = False, default=None) -> float:
            if key not in data:
                if default is None:
                    raise ValueError(f"{key}: missing")
                return float(default)
            raw = data[key]
            if isinstance(raw, bool):
                raise ValueError(f"{key}: must be a number, got {raw!r}")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{key}: must be finite, got {value}")
            if value < lo or (value == lo and not lo_inclusive) or value > hi:
                bound = f"{'[' if lo_inclusive else '('}{lo}, {hi}]"
                raise ValueError(f"{key}: must lie in {bound}, got {value}")
            return value

        q_min = vector("q_min", n, False)
        q_max = vector("q_max", n, False)
        bad = np.nonzero(q_min >= q_max)[0]
        if bad.size:
            raise ValueError(f"q_min/q_max: q_min >= q_max for joint(s) {[names[i] for i in bad]}")
        arrays = {}
        for key in ("dq_max", "ddq_max", "dddq_max"):
            arr = vector(key, n, True)
            if np.any(arr <= 0):
                raise ValueError(f"{key}: limits must be > 0, got {arr.tolist()}")
            arrays[key] = arr
        margin = vector("position_margin", n, True)
        if np.any(margin < 0):
            raise ValueError(f"position_margin: must be >= 0, got {margin.tolist()}")
        if np.any(2 * margin >= q_max - q_min):
            raise ValueError("position_margin: margin leaves no room between q_min and q_max")

        velocity_scale = scalar("velocity_scale", 0.0, 1.0)
        acceleration_scale = scalar("acceleration_scale", 0.0, 1.0)
        jerk_scale = scalar("jerk_scale", 0.0, 1.0)
        max_step_rad = scalar("max_step_rad", 0.0)
        control_dt = scalar("control_dt", 0.0, 1.0)

        ws_min = vector("workspace_min", 3, False)
        ws_max = vector("workspace_max", 3, False)
        if np.any(ws_min >= ws_max):
            raise ValueError(f"workspace_min/workspace_max: min must be < max, got {ws_min.tolist()} / {ws_max.tolist()}")

        start_pose = vector("start_pose", n, False)
        soft_lo, soft_hi = q_min + margin, q_max - margin
        outside = np.nonzero((start_pose < soft_lo) | (start_pose > soft_hi))[0]
        if outside.size:
            raise ValueError(
                f"start_pose: joint(s) {[names[i] for i in outside]} outside the limits minus position_margin"
            )
        start_tolerance = scalar("start_tolerance", 0.0)
        max_jump_rad = scalar("max_jump_rad", 0.0)
        joint_state_timeout = scalar("joint_state_timeout", 0.0)
        chunk_max_age = scalar("chunk_max_age", 0.0)
        flange = scalar("flange_length_m", 0.0, 1.0, lo_inclusive=True, default=0.107)
        tcp = scalar("tcp_offset_m", 0.0, 1.0, lo_inclusive=True, default=0.1034)
        yaw = scalar("tool_yaw_rad", -math.pi, math.pi, lo_inclusive=True, default=-math.pi / 4)
        name = str(data.get("name", "robot"))
        cartesian = {}
        for key in _CARTESIAN_KEYS:
            arr = vector(key, 2, False, required=False, default=getattr(cls, key))
            if np.any(arr <= 0):
                raise ValueError(f"{key}: [translation, rotation] limits must be > 0, got {arr.tolist()}")
            cartesian[key] = (float(arr[0]), float(arr[1]))

        def frozen(a: np.ndarray) -> np.ndarray:
            a = np.array(a, dtype=float)
            a.setflags(write=False)
            return a

        return cls(
            joint_names=tuple(names),
            q_min=frozen(q_min),
            q_max=frozen(q_max),
            dq_max=frozen(arrays["dq_max"]),
            ddq_max=frozen(arrays["ddq_max"]),
            dddq_max=frozen(arrays["dddq_max"]),
            position_margin=frozen(margin),
            velocity_scale=velocity_scale,
            acceleration_scale=acceleration_scale,
            jerk_scale=jerk_scale,
            max_step_rad=max_step_rad,
            control_dt=control_dt,
            workspace_min=frozen(ws_min),
            workspace_max=frozen(ws_max),
            start_pose=frozen(start_pose),
            start_tolerance=start_tolerance,
            max_jump_rad=max_jump_rad,
            joint_state_timeout=joint_state_timeout,
            chunk_max_age=chunk_max_age,
            flange_length_m=flange,
            tcp_offset_m=tcp,
            tool_yaw_rad=yaw,
            name=name,
            **cartesian,
        )


def bundled_config_dir() -> Path:
    """Directory of the bundled robot YAML files (``config/robots`` of the checkout or the install space)."""
    from ..paths import config_dir

    return config_dir() / "robots"


def load_robot_limits(name_or_path: str | Path) -> RobotLimits:
    """Load ``fr3``/``panda`` from the bundled config dir, or any YAML file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return RobotLimits.from_yaml(candidate)
    path = bundled_config_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        raise ValueError(f"robot: no config for {name_or_path!r} (looked for {path})")
    return RobotLimits.from_yaml(path)
