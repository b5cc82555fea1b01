"""End-effector-delta labels, one definition for the converter and the simulation's oracle (pure numpy).

A label is the step from one tool pose to the next, in the robot base frame:
``[p' - p (m), axis_angle(R' R^T) (rad)]``. The executor integrates EEF_DELTA rows the same way
(``FrankaKinematics.ik_delta``: ``p' = p + dp``, ``R' = exp(drot) R``), so a sequence of labels made from
consecutive poses sums (translation) and composes (rotation) exactly to the motion between the first and
the last pose.
"""

from __future__ import annotations

import numpy as np

from vla_adapter_ros.control.kinematics import matrix_to_axis_angle


def eef_delta(pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """(6,) step from ``pose_from`` to ``pose_to`` (4x4 homogeneous, base frame)."""
    out = np.empty(6)
    out[:3] = pose_to[:3, 3] - pose_from[:3, 3]
    out[3:] = matrix_to_axis_angle(pose_to[:3, :3] @ pose_from[:3, :3].T)
    return out


def eef_delta_labels(poses) -> np.ndarray:
    """(N-1, 6) labels between consecutive poses of an (N, 4, 4) sequence."""
    poses = np.asarray(poses, dtype=float)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4), got {poses.shape}")
    return np.array([eef_delta(a, b) for a, b in zip(poses[:-1], poses[1:])]).reshape(-1, 6)


def integrate_eef_deltas(pose: np.ndarray, deltas) -> np.ndarray:
    """Pose reached from ``pose`` by applying ``deltas`` (K, 6) in turn (the inverse of the labels)."""
    from vla_adapter_ros.control.kinematics import axis_angle_to_matrix

    out = np.array(pose, dtype=float)
    for d in np.asarray(deltas, dtype=float).reshape(-1, 6):
        nxt = np.eye(4)
        nxt[:3, 3] = out[:3, 3] + d[:3]
        nxt[:3, :3] = axis_angle_to_matrix(d[3:]) @ out[:3, :3]
        out = nxt
    return out
