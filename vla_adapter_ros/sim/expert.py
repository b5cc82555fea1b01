"""Scripted expert: solves the tasks from the true cube poses.

The expert plans a sequence of Cartesian TCP waypoints (gripper pointing down, yaw aligned with the
cube), time-parametrises them with minimum-jerk segments, and at each control tick (default 20 Hz)
converts the next TCP target to joint targets with the project's damped-least-squares IK
(:class:`vla_adapter_ros.control.kinematics.FrankaKinematics`, whose TCP is the same as the
simulator's TCP site; checked by tests to ~1e-12 m).

Each tick yields an :class:`ExpertAction` with the joint targets (7, rad), a gripper command
(0 = open .. 1 = closed) and the equivalent LIBERO-style end-effector delta action
(dpos (3, m, base frame), daxis-angle (3, rad, base frame): target relative to the measured TCP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vla_adapter_ros.control.kinematics import FrankaKinematics, axis_angle_to_matrix, rotation_error
from vla_adapter_ros.sim.scene import CUBE_HALF_M
from vla_adapter_ros.sim.tasks import LiftTask, PushLeftTask, ReachTask, Task

# Gripper pointing down, fingers opening along the base y axis (the ready pose's TCP orientation).
R_DOWN = np.diag([1.0, -1.0, -1.0])
# LIBERO / robosuite OSC_POSE scaling: a normalised action of 1 means 0.05 m / 0.5 rad per step.
LIBERO_POS_SCALE_M = 0.05
LIBERO_ROT_SCALE_RAD = 0.5


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def down_orientation(yaw: float = 0.0) -> np.ndarray:
    return rot_z(yaw) @ R_DOWN


def grasp_yaw(cube_yaw: float) -> float:
    """Gripper yaw in [-pi/4, pi/4] aligned with a cube's faces (cube is 90-degree symmetric)."""
    return (cube_yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4


@dataclass
class Waypoint:
    position: np.ndarray  # TCP position (m, base frame)
    yaw: float  # rad about base z, relative to R_DOWN
    gripper: float  # 0 open .. 1 closed, applied from the start of the segment
    duration: float | None = None  # s; None: from distance and speed


@dataclass
class ExpertAction:
    q_target: np.ndarray  # (7,) rad
    gripper: float  # 0 open .. 1 closed
    delta_pos: np.ndarray  # (3,) m, base frame, target TCP - measured TCP
    delta_rot: np.ndarray  # (3,) rad axis-angle, base frame: R_target = exp(delta_rot) R_measured
    tcp_target: np.ndarray  # 4x4
    ik_ok: bool = True
    done: bool = False

    def libero_action(self) -> np.ndarray:
        """7-d normalised LIBERO action: [dpos/0.05, drot/0.5] clipped to [-1, 1], then gripper
        (-1 open, +1 closed)."""
        a = np.concatenate([self.delta_pos / LIBERO_POS_SCALE_M, self.delta_rot / LIBERO_ROT_SCALE_RAD])
        return np.concatenate([np.clip(a, -1.0, 1.0), [2.0 * self.gripper - 1.0]])


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


@dataclass
class ScriptedExpert:
    """Time-scheduled waypoint follower for a :class:`Task`.

    max_speed: peak TCP speed (m/s) of the minimum-jerk segments.
    control_hz: rate at which :meth:`act` is called (used for the look-ahead of the targets).
    max_rot_speed: peak tool rotation speed (rad/s) of a segment (default: no bound).
    max_joint_speed, max_joint_acc: peak joint speeds (rad/s) and accelerations (rad/s^2), scalar or one per
        joint, that a segment may need (default: no bound); the plan is timed so that the arm can follow it
        within these.
    stop_ok: optional check of a moving state, ``stop_ok(q, v, a) -> bool`` (joint positions, velocities,
        accelerations): the plan is timed so that it holds all along (e.g. that braking from there keeps the
        tool inside the executor's workspace box, which the executor otherwise enforces by holding).
    """

    task: Task
    control_hz: float = 20.0
    max_speed: float = 0.35
    max_rot_speed: float = math.inf
    max_joint_speed: object = None  # float | sequence of 7 floats | None
    max_joint_acc: object = None  # float | sequence of 7 floats | None
    stop_ok: object = None  # callable(q, v, a) -> bool | None
    kin: FrankaKinematics = field(default_factory=FrankaKinematics)

    def __post_init__(self):
        self._plan: list[Waypoint] | None = None

    # ------------------------------------------------------------------ planning
    def plan(self, env) -> list[Waypoint]:
        cube = env.cube_pose(self.task.target)[0]
        yaw = grasp_yaw(env.cube_yaw(self.task.target))
        top = cube[2] + CUBE_HALF_M
        p = lambda x, y, z: np.array([x, y, z])  # noqa: E731
        cx, cy = cube[0], cube[1]
        if isinstance(self.task, ReachTask):
            return [
                Waypoint(p(cx, cy, top + 0.10), yaw, 1.0),
                Waypoint(p(cx, cy, top + ReachTask.hover_m), yaw, 1.0),
                Waypoint(p(cx, cy, top + ReachTask.hover_m), yaw, 1.0, 0.6),
            ]
        if isinstance(self.task, PushLeftTask):
            # Push with the broad side of the closed fingers (yaw pi/2: finger slide axis along x,
            # so the push load does not back-drive the fingers open).
            y0, y1, z, yw = cy - 0.07, cy + 0.08, 0.018, math.pi / 2
            return [
                Waypoint(p(cx, y0, 0.12), yw, 1.0),
                Waypoint(p(cx, y0, z), yw, 1.0),
                Waypoint(p(cx, y1, z), yw, 1.0, 2.0),
                Waypoint(p(cx, y1 - 0.03, z + 0.01), yw, 1.0, 0.5),
                Waypoint(p(cx, y1 - 0.03, 0.15), yw, 1.0),
            ]
        if isinstance(self.task, LiftTask):
            zg = cube[2] + 0.008
            return [
                Waypoint(p(cx, cy, 0.13), yaw, 0.0),
                Waypoint(p(cx, cy, zg), yaw, 0.0, 1.0),
                Waypoint(p(cx, cy, zg), yaw, 1.0, 0.7),
                Waypoint(p(cx, cy, zg + 0.13), yaw, 1.0, 1.2),
                Waypoint(p(cx, cy, zg + 0.13), yaw, 1.0, 1.0),
            ]
        raise ValueError(f"no expert for task {self.task.name}")

    def reset(self, env) -> None:
        """Plan from the current true state of ``env`` (call after the task's reset)."""
        self._t0 = env.sim_time
        pose = env.eef_pose()
        self._start = Waypoint(pose.position.copy(), 0.0, 0.0)
        self._start_rot = pose.rotation.copy()
        self._plan = self.plan(env)
        self._times = []
        t = 0.0
        prev, prev_rot = self._start.position, self._start_rot
        q = env.joint_positions()
        for wp in self._plan:
            dur, q = self._segment_duration(prev, prev_rot, wp, q, env)
            t += dur
            self._times.append(t)
            prev, prev_rot = wp.position, down_orientation(wp.yaw)
        self.duration = t
        self._q_cmd = env.joint_positions()

    def _segment_duration(self, p0, r0, wp: Waypoint, q0, env) -> tuple[float, np.ndarray]:
        """Duration of the minimum-jerk segment to ``wp`` (peak speed = 1.875 x mean speed) and the joints at
        its end: the waypoint's duration (default 0.5 s) stretched so that the peak tool speed stays within
        max_speed / max_rot_speed and, when max_joint_speed / max_joint_acc are set, every joint's peak speed
        (measured on the IK of the path) and peak acceleration (5.77 D / T^2 for a joint moving D) within them,
        and, with stop_ok, until stop_ok holds at every sample of the timed path."""
        rot = down_orientation(wp.yaw)
        dist = float(np.linalg.norm(wp.position - p0))
        w = rotation_error(rot, r0)
        dur = max(0.5 if wp.duration is None else wp.duration, 1.875 * dist / self.max_speed,
                  1.875 * float(np.linalg.norm(w)) / self.max_rot_speed)
        q = np.asarray(q0, dtype=float)
        if self.max_joint_speed is None and self.max_joint_acc is None:
            return dur, q
        v_max = np.broadcast_to(np.asarray(np.inf if self.max_joint_speed is None else self.max_joint_speed,
                                           dtype=float), q.shape)
        n = 16
        steepest = 0.0  # max over the path and the joints of |dq/ds| / v_max (s: path parameter 0..1)
        path = [q.copy()]
        for k in range(1, n + 1):
            s = k / n
            target = np.eye(4)
            target[:3, :3] = axis_angle_to_matrix(s * w) @ r0
            target[:3, 3] = p0 + s * (wp.position - p0)
            q_next, _ = self.kin.ik_to_pose(q, target, q_min=env.q_min + 0.02, q_max=env.q_max - 0.02,
                                            max_iterations=50)
            steepest = max(steepest, float(np.max(np.abs(q_next - q) / v_max)) * n)
            q = q_next
            path.append(q.copy())
        dur = max(dur, 1.875 * steepest)
        if self.max_joint_acc is not None:
            a_max = np.broadcast_to(np.asarray(self.max_joint_acc, dtype=float), q.shape)
            dur = max(dur, math.sqrt(5.7735 * float(np.max(np.abs(q - np.asarray(q0)) / a_max))))
        if self.stop_ok is not None:
            for _ in range(40):  # stretch by 10 % until the check holds along the timed path
                if self._stop_ok_along(np.array(path), dur):
                    break
                dur *= 1.1
        return dur, q

    def _stop_ok_along(self, path: np.ndarray, dur: float, m: int = 40) -> bool:
        """stop_ok at m instants of a segment of duration ``dur`` whose joints follow ``path`` (IK samples at
        evenly spaced path parameters) with the minimum-jerk timing; velocities and accelerations by finite
        differences."""
        s_grid = np.linspace(0.0, 1.0, len(path))
        h = dur / m
        times = np.arange(m + 1) * h
        s = np.array([min_jerk(t / dur) for t in times])
        q = np.stack([np.interp(s, s_grid, path[:, j]) for j in range(path.shape[1])], axis=1)
        v = np.gradient(q, h, axis=0)
        a = np.gradient(v, h, axis=0)
        return all(self.stop_ok(q[i], v[i], a[i]) for i in range(1, m))

    def _target_at(self, t: float) -> tuple[np.ndarray, np.ndarray, float, bool]:
        prev_p, prev_rot, t_prev = self._start.position, self._start_rot, 0.0
        for wp, t_end in zip(self._plan, self._times):
            rot = down_orientation(wp.yaw)
            if t <= t_end:
                s = min_jerk((t - t_prev) / max(t_end - t_prev, 1e-9))
                pos = prev_p + s * (wp.position - prev_p)
                # slerp-like: interpolate the rotation by a fraction of the relative axis-angle
                w = rotation_error(rot, prev_rot)
                r = axis_angle_to_matrix(s * w) @ prev_rot
                return pos, r, wp.gripper, False
            prev_p, prev_rot, t_prev = wp.position, rot, t_end
        last = self._plan[-1]
        return last.position.copy(), down_orientation(last.yaw), last.gripper, True

    # ------------------------------------------------------------------ acting
    def act(self, env) -> ExpertAction:
        """Action for the control period starting now: targets for ``now + 1/control_hz``."""
        if self._plan is None:
            self.reset(env)
        t = env.sim_time - self._t0 + 1.0 / self.control_hz
        pos, rot, grip, done = self._target_at(t)
        target = np.eye(4)
        target[:3, :3], target[:3, 3] = rot, pos
        q, ok = self.kin.ik_to_pose(self._q_cmd, target, q_min=env.q_min + 0.02, q_max=env.q_max - 0.02,
                                    max_iterations=30)
        self._q_cmd = q
        meas = env.eef_pose()
        return ExpertAction(
            q_target=q,
            gripper=float(grip),
            delta_pos=pos - meas.position,
            delta_rot=rotation_error(rot, meas.rotation),
            tcp_target=target,
            ik_ok=ok,
            done=done,
        )


class HoldPolicy:
    """Do-nothing baseline: holds the pose it starts in, gripper open."""

    def __init__(self):
        self._q = None

    def reset(self, env) -> None:
        self._q = env.joint_positions()

    def act(self, env) -> ExpertAction:
        if self._q is None:
            self.reset(env)
        pose = env.eef_pose()
        return ExpertAction(self._q.copy(), 0.0, np.zeros(3), np.zeros(3), pose.matrix())
