"""Franka kinematics: FK against reference numbers and an independent URDF-style chain,
Jacobian against finite differences, IK -> FK round trips, rotation helpers."""

import math

import numpy as np

from vla_adapter_ros.control.kinematics import (
    FLANGE_ONLY,
    READY_POSE,
    FrankaKinematics,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    rotation_error,
)
from vla_adapter_ros.control.limits import load_robot_limits

KIN = FrankaKinematics()
FLANGE = FrankaKinematics(FLANGE_ONLY)
LIM = load_robot_limits("fr3")


def rpy_xyz(xyz, rpy):
    """URDF <origin>: translation then fixed-axis roll-pitch-yaw (Rz Ry Rx)."""
    r, p, y = rpy
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    t = np.eye(4)
    t[:3, :3] = rz @ ry @ rx
    t[:3, 3] = xyz
    return t


# Joint origins of the Franka arm as franka_description's URDF writes them (xyz, rpy), an
# independent formulation of the same kinematics (no DH).
URDF_JOINTS = [
    ((0, 0, 0.333), (0, 0, 0)),
    ((0, 0, 0), (-math.pi / 2, 0, 0)),
    ((0, -0.316, 0), (math.pi / 2, 0, 0)),
    ((0.0825, 0, 0), (math.pi / 2, 0, 0)),
    ((-0.0825, 0.384, 0), (-math.pi / 2, 0, 0)),
    ((0, 0, 0), (math.pi / 2, 0, 0)),
    ((0.088, 0, 0), (math.pi / 2, 0, 0)),
]


def urdf_fk(q, hand=True):
    t = np.eye(4)
    for (xyz, rpy), qi in zip(URDF_JOINTS, q):
        rot = np.eye(4)
        rot[:3, :3] = axis_angle_to_matrix([0, 0, qi])
        t = t @ rpy_xyz(xyz, rpy) @ rot
    t = t @ rpy_xyz((0, 0, 0.107), (0, 0, 0))  # flange (link8)
    if hand:
        t = t @ rpy_xyz((0, 0, 0), (0, 0, -math.pi / 4)) @ rpy_xyz((0, 0, 0.1034), (0, 0, 0))
    return t


def random_q(rng, margin=0.3):
    return rng.uniform(LIM.q_min + margin, LIM.q_max - margin)


def test_ready_pose_tcp_and_flange():
    tcp = KIN.fk(READY_POSE)
    # Well-known O_T_EE of the ready pose: hand pointing down, x forward.
    np.testing.assert_allclose(tcp[:3, 3], [0.30689, 0.0, 0.48688], atol=2e-4)
    np.testing.assert_allclose(tcp[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-9)
    flange = FLANGE.fk(READY_POSE)
    np.testing.assert_allclose(flange[:3, 3], [0.30689, 0.0, 0.59028], atol=2e-4)


def test_published_measured_pose():
    # A public README logs joints [0,-50,0,-150,0,100,45] deg -> EE p = [0.289, 0.000, 0.400]
    # (measured on a Panda with hand, angles rounded to degrees), and the same with joint1 = 90
    # deg -> p = [0.001, 0.288, 0.399], quaternion ~ [0.710, 0.705, 0, 0] (x, y, z, w).
    p = KIN.fk_position(np.deg2rad([0, -50, 0, -150, 0, 100, 45]))
    np.testing.assert_allclose(p, [0.289, 0.0, 0.400], atol=5e-3)
    t = KIN.fk(np.deg2rad([90, -50, 0, -150, 0, 100, 45]))
    np.testing.assert_allclose(t[:3, 3], [0.001, 0.288, 0.399], atol=6e-3)
    rv = matrix_to_axis_angle(t[:3, :3])
    n = np.array([0.710, 0.705, 0.0]) / np.linalg.norm([0.710, 0.705, 0.0])
    assert abs(abs(np.dot(rv / np.linalg.norm(rv), n)) - 1) < 1e-3 and abs(np.linalg.norm(rv) - math.pi) < 1e-2


def test_fk_matches_independent_urdf_chain():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = random_q(rng, 0.0)
        np.testing.assert_allclose(KIN.fk(q), urdf_fk(q), atol=1e-12)
        np.testing.assert_allclose(FLANGE.fk(q), urdf_fk(q, hand=False), atol=1e-12)


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    h = 1e-6
    for _ in range(30):
        q = random_q(rng, 0.0)
        jac = KIN.jacobian(q)
        num = np.empty((6, 7))
        for i in range(7):
            dq = np.zeros(7)
            dq[i] = h
            tp, tm = KIN.fk(q + dq), KIN.fk(q - dq)
            num[:3, i] = (tp[:3, 3] - tm[:3, 3]) / (2 * h)
            num[3:, i] = rotation_error(tp[:3, :3], tm[:3, :3]) / (2 * h)
        np.testing.assert_allclose(jac, num, atol=1e-7)


def test_axis_angle_round_trip_including_small_and_near_pi():
    rng = np.random.default_rng(2)
    vecs = [np.zeros(3), np.array([1e-9, 0, 0]), np.array([0, 0, math.pi]), np.array([0, math.pi - 1e-7, 0]),
            np.array([1.0, 1.0, 0.0]) / math.sqrt(2) * (math.pi - 1e-5)]
    for _ in range(200):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        vecs.append(axis * rng.uniform(0, math.pi - 1e-3))
    for v in vecs:
        r = axis_angle_to_matrix(v)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        back = matrix_to_axis_angle(r)
        np.testing.assert_allclose(axis_angle_to_matrix(back), r, atol=1e-9)
        if np.linalg.norm(v) < math.pi - 1e-3:
            np.testing.assert_allclose(back, v, atol=1e-9)


def well_conditioned_q(rng):
    while True:
        q = random_q(rng, 0.35)
        s = np.linalg.svd(KIN.jacobian(q), compute_uv=False)
        if s[-1] > 0.05:
            return q


def test_ik_fk_round_trip_small_deltas():
    rng = np.random.default_rng(3)
    for _ in range(60):
        q = well_conditioned_q(rng)
        dpos = rng.uniform(-0.02, 0.02, 3)
        drot = rng.uniform(-0.05, 0.05, 3)
        start = KIN.fk(q)
        q_new, ok = KIN.ik_delta(q, dpos, drot, q_min=LIM.q_min, q_max=LIM.q_max)
        assert ok
        reached = KIN.fk(q_new)
        assert np.linalg.norm(reached[:3, 3] - (start[:3, 3] + dpos)) < 1e-3
        want_rot = axis_angle_to_matrix(drot) @ start[:3, :3]
        assert np.linalg.norm(rotation_error(want_rot, reached[:3, :3])) < 1e-3
        assert np.max(np.abs(q_new - q)) < 0.5  # stays on the same branch


def test_ik_round_trip_to_sampled_reachable_poses():
    rng = np.random.default_rng(4)
    for _ in range(40):
        q = well_conditioned_q(rng)
        q_goal = q + rng.uniform(-0.03, 0.03, 7)
        goal = KIN.fk(q_goal)
        q_sol, ok = KIN.ik_to_pose(q, goal)
        assert ok
        reached = KIN.fk(q_sol)
        assert np.linalg.norm(reached[:3, 3] - goal[:3, 3]) < 1e-3
        assert np.linalg.norm(rotation_error(goal[:3, :3], reached[:3, :3])) < 1e-3


def test_ik_respects_joint_limits():
    # Joint 4 of the FR3 sits close to its upper limit; ask for a motion that wants more of it.
    q = np.array(READY_POSE)
    q[3] = LIM.q_max[3] - 0.01
    lo, hi = np.array(LIM.q_min), np.array(LIM.q_max)
    for dpos in ([0.05, 0, 0], [-0.05, 0, 0], [0, 0, 0.05], [0, 0, -0.05]):
        q_new, _ = KIN.ik_delta(q, dpos, [0, 0, 0], q_min=lo, q_max=hi)
        assert np.all(q_new >= lo) and np.all(q_new <= hi)


def test_zero_delta_is_identity():
    q_new, ok = KIN.ik_delta(READY_POSE, np.zeros(3), np.zeros(3))
    assert ok
    np.testing.assert_allclose(q_new, READY_POSE, atol=1e-12)
