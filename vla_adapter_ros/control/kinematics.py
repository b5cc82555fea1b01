"""Franka (FR3 / Panda) kinematics: forward kinematics, Jacobian, damped-least-squares IK.

Conventions and units
---------------------
* Joint angles in rad, lengths in m, everything expressed in the robot base frame
  (``fr3_link0`` / ``panda_link0``).
* Denavit-Hartenberg parameters in the modified (Craig) convention published by Franka
  Robotics for the FER/Panda and FR3 arms (both arms share the same kinematic table):
  link transform ``T_i = RotX(alpha_i) * TransX(a_i) * RotZ(q_i) * TransZ(d_i)``.
* After joint 7 comes the flange (``d = 0.107 m`` along z7) and then, if a hand is mounted,
  the hand, rotated by -pi/4 about the flange z axis, with the tool centre point (TCP,
  between the fingertips) ``0.1034 m`` further along z. Both are configurable.
* Rotations as 3x3 matrices or axis-angle vectors (unit axis times angle, rad).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (a [m], d [m], alpha [rad]) per joint, modified DH, Franka FER / FR3.
FRANKA_DH = np.array(
    [
        [0.0, 0.333, 0.0],
        [0.0, 0.0, -math.pi / 2],
        [0.0, 0.316, math.pi / 2],
        [0.0825, 0.0, math.pi / 2],
        [-0.0825, 0.384, -math.pi / 2],
        [0.0, 0.0, math.pi / 2],
        [0.088, 0.0, math.pi / 2],
    ]
)
FLANGE_LENGTH_M = 0.107
HAND_TCP_OFFSET_M = 0.1034
HAND_YAW_RAD = -math.pi / 4
READY_POSE = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])


# ---------------------------------------------------------------------------------------------
# Rotation helpers
# ---------------------------------------------------------------------------------------------
def skew(v: np.ndarray) -> np.ndarray:
    """3x3 cross-product matrix of a 3-vector: ``skew(a) @ b == cross(a, b)``."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (axis * angle, rad), Rodrigues' formula."""
    rotvec = np.asarray(rotvec, dtype=float)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3) + skew(rotvec)
    k = skew(rotvec / angle)
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def matrix_to_axis_angle(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector (rad) of a rotation matrix; angle in [0, pi]. Stable near 0 and pi."""
    rot = np.asarray(rot, dtype=float)
    cos_angle = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    vee = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    angle = math.atan2(0.5 * float(np.linalg.norm(vee)), float(cos_angle))  # accurate near 0 and pi
    if angle < 1e-6:
        return 0.5 * vee  # first order: R ~ I + skew(w)
    if math.pi - angle > 1e-4:
        return vee * (angle / (2.0 * math.sin(angle)))
    # Near pi: axis from the symmetric part, R = 2 n n^T - I (+ O(pi - angle)).
    sym = (rot + rot.T) / 2.0 - cos_angle * np.eye(3)
    col = int(np.argmax(np.diag(sym)))
    axis = sym[:, col] / math.sqrt(max(sym[col, col], 1e-300))
    axis /= np.linalg.norm(axis)
    if np.dot(axis, vee) < 0.0:
        axis = -axis
    return axis * angle


def rotation_error(rot_target: np.ndarray, rot_current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (rad, base frame) ``w`` with ``exp(w) @ rot_current == rot_target``."""
    return matrix_to_axis_angle(rot_target @ rot_current.T)


# ---------------------------------------------------------------------------------------------
# Forward kinematics, Jacobian, IK
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolOffset:
    """Transform from joint 7 to the tool point.

    flange_length_m: distance from the joint-7 frame to the flange along z7 (m).
    tcp_offset_m: distance from the flange to the tool centre point along the tool z (m);
        0.1034 for the Franka Hand, 0.0 to get the flange itself.
    tool_yaw_rad: rotation of the tool frame about the flange z axis (rad); -pi/4 for the hand.
    """

    flange_length_m: float = FLANGE_LENGTH_M
    tcp_offset_m: float = HAND_TCP_OFFSET_M
    tool_yaw_rad: float = HAND_YAW_RAD

    def matrix(self) -> np.ndarray:
        c, s = math.cos(self.tool_yaw_rad), math.sin(self.tool_yaw_rad)
        t = np.eye(4)
        t[:2, :2] = [[c, -s], [s, c]]
        t[2, 3] = self.flange_length_m + self.tcp_offset_m
        return t


FLANGE_ONLY = ToolOffset(tcp_offset_m=0.0, tool_yaw_rad=0.0)


class FrankaKinematics:
    """Kinematics of a 7-dof Franka arm for a configurable tool offset.

    Methods take joint angles ``q`` (7,) in rad. Positions in m, base frame.
    """

    n_joints = 7

    def __init__(self, tool: ToolOffset = ToolOffset()):
        self.tool = tool
        self._tool_matrix = tool.matrix()
        # Constant part of each link transform: RotX(alpha) * TransX(a).
        self._const = []
        for a, d, alpha in FRANKA_DH:
            ca, sa = math.cos(alpha), math.sin(alpha)
            self._const.append((a, d, ca, sa))

    def _link(self, i: int, qi: float) -> np.ndarray:
        a, d, ca, sa = self._const[i]
        ct, st = math.cos(qi), math.sin(qi)
        # RotX(alpha) TransX(a) RotZ(q) TransZ(d), written out.
        return np.array(
            [
                [ct, -st, 0.0, a],
                [st * ca, ct * ca, -sa, -sa * d],
                [st * sa, ct * sa, ca, ca * d],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )

    def frames(self, q: np.ndarray) -> list[np.ndarray]:
        """4x4 base-frame transforms of joint frames 1..7 followed by the tool frame (8 items)."""
        q = np.asarray(q, dtype=float)
        out = []
        t = np.eye(4)
        for i in range(7):
            t = t @ self._link(i, q[i])
            out.append(t)
        out.append(t @ self._tool_matrix)
        return out

    def fk(self, q: np.ndarray) -> np.ndarray:
        """4x4 base-frame pose of the tool frame."""
        return self.frames(q)[-1]

    def fk_position(self, q: np.ndarray) -> np.ndarray:
        """Tool point position (3,) in m."""
        return self.fk(q)[:3, 3].copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """6x7 geometric Jacobian of the tool point, base frame: rows [v (m/s); w (rad/s)]."""
        return self._jacobian_from_frames(self.frames(q))

    @staticmethod
    def _jacobian_from_frames(frames: list[np.ndarray]) -> np.ndarray:
        p_tool = frames[-1][:3, 3]
        jac = np.empty((6, 7))
        for i in range(7):
            z = frames[i][:3, 2]  # joint i rotates about z of its own (modified DH) frame
            jac[:3, i] = np.cross(z, p_tool - frames[i][:3, 3])
            jac[3:, i] = z
        return jac

    def ik_to_pose(
        self,
        q_start: np.ndarray,
        target_pose: np.ndarray,
        q_min: np.ndarray | None = None,
        q_max: np.ndarray | None = None,
        damping: float = 0.02,
        max_iterations: int = 20,
        position_tolerance_m: float = 1e-5,
        rotation_tolerance_rad: float = 1e-4,
        max_joint_step_rad: float = 0.2,
        rotation_weight_m: float = 1.0,
    ) -> tuple[np.ndarray, bool]:
        """Damped-least-squares IK from ``q_start`` to a 4x4 ``target_pose`` (base frame).

        Each iteration solves ``dq = J^T (J J^T + lambda^2 I)^-1 e`` for the 6-d pose error e
        (position m, rotation rad scaled by ``rotation_weight_m``), limits the step to
        ``max_joint_step_rad`` per joint and clamps to ``[q_min, q_max]`` (joint-limit aware:
        a joint pinned at a limit is removed from the next iterations' Jacobian).
        Returns (q, converged). Intended for small targets near ``q_start`` (per-step deltas).
        """
        q = np.array(q_start, dtype=float)
        weight = np.array([1.0, 1.0, 1.0, rotation_weight_m, rotation_weight_m, rotation_weight_m])
        active = np.ones(7, dtype=bool)
        for _ in range(max_iterations):
            frames = self.frames(q)
            pose = frames[-1]
            e_pos = target_pose[:3, 3] - pose[:3, 3]
            e_rot = rotation_error(target_pose[:3, :3], pose[:3, :3])
            if np.linalg.norm(e_pos) < position_tolerance_m and np.linalg.norm(e_rot) < rotation_tolerance_rad:
                return q, True
            jac = self._jacobian_from_frames(frames) * weight[:, None]
            jac[:, ~active] = 0.0
            err = np.concatenate([e_pos, e_rot]) * weight
            jjt = jac @ jac.T + (damping**2) * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, err)
            biggest = np.max(np.abs(dq))
            if biggest > max_joint_step_rad:
                dq *= max_joint_step_rad / biggest
            q = q + dq
            if q_min is not None and q_max is not None:
                clamped = np.clip(q, q_min, q_max)
                active &= ~((clamped != q) & (np.abs(dq) > 0))
                q = clamped
        pose = self.fk(q)
        ok = (
            np.linalg.norm(target_pose[:3, 3] - pose[:3, 3]) < position_tolerance_m * 10
            and np.linalg.norm(rotation_error(target_pose[:3, :3], pose[:3, :3])) < rotation_tolerance_rad * 10
        )
        return q, bool(ok)

    def ik_delta(
        self,
        q: np.ndarray,
        delta_position_m: np.ndarray,
        delta_rotation_rad: np.ndarray,
        q_min: np.ndarray | None = None,
        q_max: np.ndarray | None = None,
        **ik_options,
    ) -> tuple[np.ndarray, bool]:
        """Joint target that moves the tool by an end-effector delta, starting at ``q``.

        delta_position_m: (3,) translation in m, base frame.
        delta_rotation_rad: (3,) axis-angle in rad, base frame, applied on the left:
            ``R_target = exp(delta_rotation) @ R_current``.
        Returns (q_target, converged).
        """
        pose = self.fk(q)
        target = np.eye(4)
        target[:3, 3] = pose[:3, 3] + np.asarray(delta_position_m, dtype=float)
        target[:3, :3] = axis_angle_to_matrix(delta_rotation_rad) @ pose[:3, :3]
        return self.ik_to_pose(q, target, q_min=q_min, q_max=q_max, **ik_options)
