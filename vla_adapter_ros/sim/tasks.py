"""Task definitions: instruction, seeded object placement, success check.

Placement is in the robot base frame (m, rad). Cubes rest on the table (z = half size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.sim.scene import CUBE_HALF_M, TABLE_X_RANGE, TABLE_Y_RANGE

# Shared workspace in which cubes are placed (base frame, m).
WORKSPACE_X = (0.40, 0.62)
WORKSPACE_Y = (-0.22, 0.22)
YAW_RANGE = (-0.4, 0.4)
MIN_CUBE_DISTANCE_M = 0.10


@dataclass(frozen=True)
class Task:
    """A tabletop task.

    name: identifier; instruction: natural-language command; target: colour of the cube acted on;
    target_x_range / target_y_range: placement range of the target cube; others are placed in
    the shared workspace, at least MIN_CUBE_DISTANCE_M from each other.
    """

    name: str
    instruction: str
    target: str
    target_x_range: tuple[float, float]
    target_y_range: tuple[float, float]
    max_duration_s: float = 8.0

    # -------------------------------------------------------------- placement
    def placement(self, seed: int, cubes=("red", "green", "blue")) -> dict[str, tuple[float, float, float]]:
        """Seeded cube poses {colour: (x, y, yaw)}."""
        rng = np.random.default_rng(seed)
        for _ in range(1000):
            poses = {self.target: (rng.uniform(*self.target_x_range), rng.uniform(*self.target_y_range),
                                   rng.uniform(*YAW_RANGE))}
            ok = True
            for c in cubes:
                if c == self.target:
                    continue
                p = (rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y), rng.uniform(*YAW_RANGE))
                if any(math.hypot(p[0] - q[0], p[1] - q[1]) < MIN_CUBE_DISTANCE_M for q in poses.values()):
                    ok = False
                    break
                if not self._clear(p, poses[self.target]):
                    ok = False
                    break
                poses[c] = p
            if ok:
                return poses
        raise RuntimeError("could not place cubes")

    def _clear(self, other, target) -> bool:
        """Task-specific keep-out zone for distractors around the target (override)."""
        return True

    # -------------------------------------------------------------- episode
    def reset(self, env, seed: int, start_jitter: float = 0.0) -> dict:
        """Reset ``env`` with this task's seeded placement (env remembers the initial cube poses
        in ``env.task_initial_cubes``). ``start_jitter`` > 0 also moves the arm's start pose (see
        :func:`jittered_start`); the cube placement of a seed is the same either way."""
        q0 = jittered_start(seed, start_jitter, env.q_min, env.q_max) if start_jitter != 0 else None
        return env.reset(seed=seed, q0=q0, cube_poses=self.placement(seed, env.cubes))

    def success(self, env) -> bool:
        raise NotImplementedError

    def progress(self, env) -> dict:
        """How far the episode got, in the quantities :meth:`success` tests (m): for failure analysis."""
        raise NotImplementedError


class ReachTask(Task):
    """TCP within 3 cm of the point 1.5 cm above the top face centre of the target cube."""

    tolerance_m = 0.03
    hover_m = 0.015

    def success(self, env) -> bool:
        cube = env.cube_pose(self.target)[0]
        goal = cube + np.array([0.0, 0.0, CUBE_HALF_M + self.hover_m])
        return bool(np.linalg.norm(env.eef_pose().position - goal) < self.tolerance_m)

    def progress(self, env) -> dict:
        cube = env.cube_pose(self.target)[0]
        goal = cube + np.array([0.0, 0.0, CUBE_HALF_M + self.hover_m])
        return {"goal_distance_m": float(np.linalg.norm(env.eef_pose().position - goal))}


class PushLeftTask(Task):
    """Target cube moved >= 8 cm in +y (robot's left) and still resting on the table."""

    min_shift_m = 0.08

    def _clear(self, other, target) -> bool:
        # Keep the pushing corridor (from 8 cm right of the cube to 25 cm left of it) free.
        return not (abs(other[0] - target[0]) < 0.10 and -0.12 < other[1] - target[1] < 0.28)

    def success(self, env) -> bool:
        pos = env.cube_pose(self.target)[0]
        start = env.task_initial_cubes[self.target]
        on_table = (abs(pos[2] - CUBE_HALF_M) < 0.01 and TABLE_X_RANGE[0] < pos[0] < TABLE_X_RANGE[1]
                    and TABLE_Y_RANGE[0] < pos[1] < TABLE_Y_RANGE[1])
        return bool(on_table and pos[1] - start[1] >= self.min_shift_m)

    def progress(self, env) -> dict:
        pos = env.cube_pose(self.target)[0]
        start = env.task_initial_cubes[self.target]
        return {"shift_left_m": float(pos[1] - start[1]), "moved_m": float(np.linalg.norm(pos[:2] - start[:2]))}


class LiftTask(Task):
    """Target cube raised >= 5 cm above its resting height while both fingers touch it."""

    min_lift_m = 0.05

    def success(self, env) -> bool:
        pos = env.cube_pose(self.target)[0]
        touching = all(env.finger_contacts(self.target))
        return bool(touching and pos[2] - CUBE_HALF_M >= self.min_lift_m)

    def progress(self, env) -> dict:
        pos = env.cube_pose(self.target)[0]
        return {"lift_m": float(pos[2] - CUBE_HALF_M), "fingers_touching": int(sum(env.finger_contacts(self.target)))}


# Start-pose jitter at start_jitter = 1: TCP offset from the ready pose (m) and yaw (rad), uniform in +-.
START_JITTER_XYZ_M = np.array([0.08, 0.12, 0.05])
START_JITTER_YAW_RAD = 0.3


def check_start_jitter(scale: float) -> float:
    """``scale`` if it is a valid start jitter (a number in [0, 1]); ValueError otherwise."""
    if not (math.isfinite(scale) and 0.0 <= scale <= 1.0):
        raise ValueError(f"start jitter must be in [0, 1], got {scale!r}")
    return float(scale)


def jittered_start(seed: int, scale: float, q_min=None, q_max=None) -> np.ndarray:
    """Arm joints (7,) for a seeded random start: the ready pose's TCP moved by up to ``scale`` times
    START_JITTER_XYZ_M and turned by up to ``scale`` times START_JITTER_YAW_RAD about the vertical.

    Demonstrations from varied starts keep a behaviour-cloned policy from reading the goal off the arm's
    pose (every trajectory from one fixed start passes through poses that reveal where it goes).
    Drawn from a stream of its own, so a seed's cube placement does not change."""
    from vla_adapter_ros.control.kinematics import FrankaKinematics
    from vla_adapter_ros.sim.env import READY_POSE
    from vla_adapter_ros.sim.expert import rot_z

    check_start_jitter(scale)
    rng = np.random.default_rng([int(seed), 7919])
    offset = rng.uniform(-1.0, 1.0, 3) * START_JITTER_XYZ_M * scale
    yaw = rng.uniform(-1.0, 1.0) * START_JITTER_YAW_RAD * scale
    kin = FrankaKinematics()
    target = kin.fk(READY_POSE)
    target[:3, :3] = rot_z(yaw) @ target[:3, :3]
    target[:3, 3] += offset
    q, ok = kin.ik_to_pose(READY_POSE, target, q_min=q_min, q_max=q_max, max_iterations=200)
    if not ok:  # pragma: no cover - the ranges are well inside the workspace
        raise RuntimeError(f"no IK solution for the start pose of seed {seed}")
    return q


TASKS: dict[str, Task] = {
    "reach_red": ReachTask("reach_red", "reach the red cube", "red", (0.40, 0.62), (-0.2, 0.2), 5.0),
    "push_blue_left": PushLeftTask("push_blue_left", "push the blue cube to the left", "blue",
                                   (0.42, 0.60), (-0.2, 0.02), 12.0),
    "lift_green": LiftTask("lift_green", "lift the green cube", "green", (0.40, 0.60), (-0.18, 0.18), 8.0),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
