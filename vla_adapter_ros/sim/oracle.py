"""The scripted expert as a policy: EEF-delta action chunks from an observation (pure Python, no ROS).

A learned policy sees an observation (camera stamp ``t_obs``, the measured tool pose then) and returns
``horizon`` rows of end-effector deltas, ``dt`` apart, plus a gripper closure per row; the executor turns
them into joint targets within its limits. :class:`ExpertOracle` answers the same question with the
scripted expert's plan, so the whole path a learned policy takes (chunks -> executor -> controller) can
be checked without a model, and demonstrations can be recorded through it (what the executor really
commanded, at the executor's limits).

Rows are the labels a perfect policy trained on our datasets would output (the converter's labels:
next pose minus pose, :func:`vla_adapter_ros.data.labels.eef_delta`): with ``P_0`` the measured pose at
``t_obs`` and ``P_i`` the plan's pose at ``t_obs + i * dt``, row ``i`` is the step ``P_i -> P_{i+1}``.
Row 0 therefore also carries the correction from where the tool is to where the plan wants it.
Gripper closure of row ``i``: the plan's gripper at ``t_obs + (i + 1) * dt`` (0 open .. 1 closed, as in
``ActionChunk.gripper``).

The plan starts at the first chunk (:meth:`ExpertOracle.reset` with the state then) and is timed so that
the executor can follow it: each segment is stretched until its peak joint speeds and accelerations
(measured on the IK of the path) stay within ``JOINT_LIMIT_MARGIN`` of the executor's limits
(``limits``: the robot file the executor uses).
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.data.labels import eef_delta
from vla_adapter_ros.sim.expert import ScriptedExpert, down_orientation  # noqa: F401 (re-export)
from vla_adapter_ros.sim.tasks import Task

# Peak tool speed of the expert's minimum-jerk segments (the joint limits, when given, slow it further).
ORACLE_MAX_SPEED = 0.35  # m/s
ORACLE_MAX_ROT_SPEED = math.inf  # rad/s; the joint limits bound the turns (joint 7 turns the tool)
# Share of the executor's joint velocity and acceleration limits the plan may need at its peak.
JOINT_LIMIT_MARGIN = 0.8
WORKSPACE_MARGIN_M = 0.003  # m the predicted end of a stop keeps inside the executor's workspace box
DEFAULT_HORIZON = 8
DEFAULT_DT = 0.1  # s: the datasets' frame period (10 Hz cameras)


def stop_inside_workspace(limits, margin_m: float = WORKSPACE_MARGIN_M):
    """``check(q, v, a) -> bool``: a stop from the moving joint state (q, v, a), as the executor's safety filter
    predicts it (``control.safety.stop_duration``; the filter holds when the stop would end outside the box),
    ends with the tool at least ``margin_m`` inside the workspace box of ``limits``."""
    from vla_adapter_ros.control.kinematics import FrankaKinematics, ToolOffset
    from vla_adapter_ros.control.safety import quartic_stop_end, stop_duration

    kin = FrankaKinematics(ToolOffset(limits.flange_length_m, limits.tcp_offset_m, limits.tool_yaw_rad))
    lo = np.asarray(limits.workspace_min, dtype=float) + margin_m
    hi = np.asarray(limits.workspace_max, dtype=float) - margin_m
    a_max, j_max, dt = np.asarray(limits.a_max), np.asarray(limits.j_max), float(limits.control_dt)

    def check(q, v, a) -> bool:
        p = kin.fk_position(quartic_stop_end(q, v, a, stop_duration(v, a, a_max, j_max, dt)))
        return bool(np.all(p >= lo) and np.all(p <= hi))

    return check


@dataclass
class OracleChunk:
    arm: np.ndarray  # (horizon, 6) EEF deltas [dx dy dz (m), drx dry drz (rad)], base frame
    closure: np.ndarray  # (horizon,) gripper 0 open .. 1 closed
    plan_time: float  # s since the expert started, of row 0
    done: bool  # the plan ends within this chunk


class ExpertOracle:
    """Expert action chunks for observations of one episode.

    task: the task; horizon, dt: rows and their period (the dataset's frame period);
    max_speed, max_rot_speed: the expert's peak tool speeds (m/s, rad/s);
    limits: the executor's :class:`~vla_adapter_ros.control.RobotLimits` (None: no joint bounds): the plan
        is timed so that its peak joint speeds and accelerations stay within ``JOINT_LIMIT_MARGIN`` of the
        limits the executor enforces (``v_max``, ``a_max``), and so that braking from anywhere on it would
        keep the tool inside the workspace box (:func:`stop_inside_workspace`).
    """

    def __init__(self, task: Task, horizon: int = DEFAULT_HORIZON, dt: float = DEFAULT_DT,
                 max_speed: float = ORACLE_MAX_SPEED, max_rot_speed: float = ORACLE_MAX_ROT_SPEED,
                 limits=None):
        if horizon < 1 or not dt > 0 or not max_speed > 0:
            raise ValueError(f"horizon >= 1, dt > 0 and max_speed > 0 needed, got {horizon}, {dt}, {max_speed}")
        self.task = task
        self.horizon = int(horizon)
        self.dt = float(dt)
        self.expert = ScriptedExpert(task, control_hz=1.0 / self.dt, max_speed=float(max_speed),
                                     max_rot_speed=float(max_rot_speed),
                                     max_joint_speed=None if limits is None else JOINT_LIMIT_MARGIN * limits.v_max,
                                     max_joint_acc=None if limits is None else JOINT_LIMIT_MARGIN * limits.a_max,
                                     stop_ok=None if limits is None else stop_inside_workspace(limits))
        self.t0: float | None = None

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def reset(self, env) -> None:
        """Plan from the true state of ``env`` (cube poses, tool pose) at ``env.sim_time``."""
        self.expert.reset(env)
        self.t0 = env.sim_time

    def plan_pose(self, t_plan: float) -> tuple[np.ndarray, float, bool]:
        """(4x4 tool pose, gripper closure, done) of the plan ``t_plan`` s after its start."""
        pos, rot, grip, done = self.expert._target_at(t_plan)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, pos
        return pose, float(grip), bool(done)

    def chunk(self, t_obs: float, measured_pose: np.ndarray) -> OracleChunk:
        """The chunk for an observation taken at ``t_obs`` (the env's simulation time, s) with the tool
        at ``measured_pose`` (4x4, base frame)."""
        if self.t0 is None:
            raise RuntimeError("ExpertOracle.chunk before reset")
        t_plan = max(0.0, t_obs - self.t0)
        poses = [np.asarray(measured_pose, dtype=float)]
        closure = np.empty(self.horizon)
        done = False
        for i in range(1, self.horizon + 1):
            pose, grip, end = self.plan_pose(t_plan + i * self.dt)
            poses.append(pose)
            closure[i - 1] = grip
            done = done or end
        arm = np.array([eef_delta(a, b) for a, b in zip(poses[:-1], poses[1:])])
        return OracleChunk(arm, closure, t_plan, done)
