"""MuJoCo Franka simulation: scene, joint names, holding, tracking, FK agreement, rendering, NaN."""

from __future__ import annotations

import importlib.util
import os
import math

import numpy as np
import pytest

# Headless EGL rendering must be chosen before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
pytest.importorskip("mujoco")
if importlib.util.find_spec("robosuite") is None:
    pytest.skip("robosuite (model files) not installed", allow_module_level=True)

from vla_adapter_ros.control.kinematics import FrankaKinematics  # noqa: E402
from vla_adapter_ros.sim.env import READY_POSE, FrankaSimEnv  # noqa: E402
from vla_adapter_ros.sim.tasks import get_task  # noqa: E402

KIN = FrankaKinematics()


def test_scene_loads_and_names(env):
    assert env.timestep <= 0.002
    assert env.joint_names == [f"fr3_joint{i}" for i in range(1, 8)]
    assert env.finger_joint_names == ["fr3_finger_joint1", "fr3_finger_joint2"]
    panda = FrankaSimEnv(joint_prefix="panda_")
    assert panda.all_joint_names[0] == "panda_joint1" and panda.all_joint_names[-1] == "panda_finger_joint2"
    panda.close()
    s = env.reset()
    np.testing.assert_allclose(s["q"], READY_POSE)
    assert set(s["cubes"]) >= {"red", "green", "blue"}
    assert env.gripper_width() == pytest.approx(0.08)


def test_ready_pose_holds_under_gravity(env):
    env.reset()
    env.advance(1.0)
    assert env.sim_time == pytest.approx(1.0, abs=1e-9)
    assert np.max(np.abs(env.joint_positions() - READY_POSE)) < 1e-3
    assert np.max(np.abs(env.joint_velocities())) < 1e-3
    np.testing.assert_allclose(env.finger_positions(), [0.04, 0.04], atol=1e-3)


def test_tracks_smooth_joint_reference(env):
    env.reset()
    q0 = env.joint_positions()
    amp = np.array([0.3, 0.25, 0.3, 0.3, 0.4, 0.3, 0.5])
    w = 2 * math.pi / 2.0  # 2 s period; peak speed amp * w (up to 1.6 rad/s)
    worst = 0.0
    for _ in range(200):  # 2 s, reference updated at 100 Hz with velocity feed-forward
        t = env.sim_time + 0.01
        env.set_joint_targets(q0 + amp * (1 - np.cos(w * t)), amp * w * np.sin(w * t))
        env.step(5)
        ref = q0 + amp * (1 - np.cos(w * env.sim_time))
        worst = max(worst, float(np.max(np.abs(env.joint_positions() - ref))))
    assert worst < 0.02


def test_named_targets_reordered(env):
    env.reset()
    q = READY_POSE + 0.1
    names = list(reversed(env.joint_names))
    env.set_joint_targets(q[::-1], names=names)
    np.testing.assert_allclose(env.joint_targets, q)


def test_eef_pose_matches_project_fk(env):
    """TCP site == FrankaKinematics default tool (flange 0.107 + hand 0.1034 m, yaw -pi/4):
    agreement to 1e-9 m / 1e-9 (rotation matrix entries)."""
    rng = np.random.default_rng(0)
    poses = [READY_POSE] + [rng.uniform(env.q_min, env.q_max) for _ in range(5)]
    for q in poses:
        env.reset(q0=q)
        pose = env.eef_pose()
        t = KIN.fk(q)
        np.testing.assert_allclose(pose.position, t[:3, 3], atol=1e-9)
        np.testing.assert_allclose(pose.rotation, t[:3, :3], atol=1e-9)
        x, y, z, w = pose.quat_xyzw
        assert abs(np.linalg.norm(pose.quat_xyzw) - 1) < 1e-9
        # quaternion consistent with the matrix (z column)
        zcol = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
        np.testing.assert_allclose(zcol, pose.rotation[:, 2], atol=1e-9)
    env.reset()


def test_nan_targets_rejected_and_held(env):
    env.reset()
    before = env.joint_targets
    for bad in ([math.nan] * 7, [0.0] * 6 + [math.inf], [0.0] * 6):
        with pytest.raises(ValueError):
            env.set_joint_targets(bad)
    with pytest.raises(ValueError):
        env.set_joint_targets(READY_POSE, qd_target=[math.nan] * 7)
    with pytest.raises(ValueError):
        env.set_gripper(math.nan)
    np.testing.assert_array_equal(env.joint_targets, before)
    env.advance(0.2)
    assert np.max(np.abs(env.joint_positions() - READY_POSE)) < 1e-3


def test_gripper_closes_and_opens(env):
    env.reset()
    env.set_gripper(True)
    env.advance(1.0)
    assert env.gripper_width() < 0.005
    env.set_gripper(0.05)
    env.advance(1.0)
    assert env.gripper_width() == pytest.approx(0.05, abs=0.003)


def test_render_shape_and_orientation(env):
    task = get_task("reach_red")
    task.reset(env, 3)
    for cam in ("agentview", "wrist"):
        img = env.render(cam, 64, 48)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not blank
    img = env.render("agentview", 224, 224)
    assert img.shape == (224, 224, 3)
    # Upright: red pixels lie where the red cube projects (row 0 = top), and the cube (on the
    # table, below the camera) is in the lower half; sky/floor at the top is not red.
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 10
    rows, cols = np.nonzero(red)
    u, v = env.project("agentview", env.cube_pose("red")[0], 224, 224)
    assert abs(rows.mean() - v) < 6 and abs(cols.mean() - u) < 6
    assert v > 112
    # The image's right is the robot's left: a cube at +y appears right of one at -y.
    env.reset(cube_poses={"red": (0.5, 0.2), "green": (0.5, -0.2), "blue": (0.8, 0.0)})
    img = env.render("agentview", 96, 96)
    red_cols = np.nonzero((img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80))[1]
    green_cols = np.nonzero((img[..., 1] > 130) & (img[..., 0] < 80) & (img[..., 2] < 90))[1]
    assert red_cols.mean() > 48 > green_cols.mean()
    # Wrist camera looks along the gripper: at the ready pose the table fills its lower part.
    wrist = env.render("wrist", 64, 64)
    assert wrist.shape == (64, 64, 3)


def test_images_differ_between_seeds(env):
    task = get_task("push_blue_left")
    task.reset(env, 0)
    a = env.render("agentview", 64, 64).astype(int)
    task.reset(env, 1)
    b = env.render("agentview", 64, 64).astype(int)
    task.reset(env, 0)
    c = env.render("agentview", 64, 64).astype(int)
    assert np.abs(a - b).sum() > 0
    np.testing.assert_array_equal(a, c)  # same seed, same image


def test_env_with_task_resets_by_seed():
    e = FrankaSimEnv(task="lift_green")
    s1 = e.reset(seed=4)
    expected = get_task("lift_green").placement(4)["green"]
    np.testing.assert_allclose(s1["cubes"]["green"][:2], expected[:2], atol=1e-9)
    s2 = e.reset(seed=5)
    assert np.linalg.norm(s2["cubes"]["green"] - s1["cubes"]["green"]) > 1e-6
    assert not get_task("lift_green").success(e)
    e.close()


def test_advance_accumulates_fractional_steps(env):
    env.reset()
    steps = sum(env.advance(0.001) for _ in range(10))  # 1 ms calls, 2 ms physics step
    assert steps == 5
    assert env.sim_time == pytest.approx(0.01, abs=1e-9)
    with pytest.raises(ValueError):
        env.advance(math.nan)


def _robot_visual_points(env) -> np.ndarray:
    """World positions of the vertices of every drawn robot mesh at the current state."""
    import mujoco

    m, d = env.model, env.data
    pts = []
    for g in range(m.ngeom):
        body = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]) or ""
        if body.startswith("robot/") and m.geom_group[g] <= 2 and m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH:
            mesh = m.geom_dataid[g]
            v = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
            pts.append(d.geom_xpos[g] + v @ d.geom_xmat[g].reshape(3, 3).T)
    return np.concatenate(pts)


def test_agentview_frames_the_whole_arm_and_the_workspace(env):
    """The arm at the ready pose (base to the top of the elbow) and every corner of the cube workspace,
    up to a lifted cube, project inside a 224x224 agentview image; a cube there is still a few pixels."""
    from vla_adapter_ros.sim.scene import CUBE_HALF_M
    from vla_adapter_ros.sim.tasks import WORKSPACE_X, WORKSPACE_Y

    env.reset()
    arm = _robot_visual_points(env)
    assert arm[:, 2].max() > 0.7  # the elbow's top: the part the old framing cut off
    corners = np.array([(x, y, z) for x in (WORKSPACE_X[0] - CUBE_HALF_M, WORKSPACE_X[1] + CUBE_HALF_M)
                        for y in (WORKSPACE_Y[0] - CUBE_HALF_M, WORKSPACE_Y[1] + CUBE_HALF_M)
                        for z in (0.0, 2 * CUBE_HALF_M + 0.05)])
    for name, points in (("arm", arm), ("workspace", corners)):
        uv = np.array([env.project("agentview", p, 224, 224) for p in points])
        assert uv.min() >= 2 and uv.max() <= 222, f"{name} leaves the image: {uv.min(0)} .. {uv.max(0)}"
    # the cubes stay as large as the framing allows: a 4 cm edge at the far corner spans > 7 px
    a = env.project("agentview", (WORKSPACE_X[0], WORKSPACE_Y[0] - CUBE_HALF_M, 0.0), 224, 224)
    b = env.project("agentview", (WORKSPACE_X[0], WORKSPACE_Y[0] + CUBE_HALF_M, 0.0), 224, 224)
    assert np.linalg.norm(a - b) > 7


def test_robot_is_drawn_matte_without_its_collision_meshes(env):
    """robosuite's collision meshes coincide with the visual ones and z-fight ('glitter') when drawn:
    they are in a group the renderer hides, and the robot's materials have no hard highlights."""
    import mujoco

    from vla_adapter_ros.sim.scene import ROBOT_COLLISION_GROUP

    m = env.model
    collision = [g for g in range(m.ngeom) if m.geom_contype[g] == 2 or
                 (mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or "").endswith("_collision")]
    assert len(collision) >= 8
    assert all(m.geom_group[g] == ROBOT_COLLISION_GROUP for g in collision)
    assert not mujoco.MjvOption().geomgroup[ROBOT_COLLISION_GROUP]  # hidden by default
    robot_mats = [i for i in range(m.nmat)
                  if mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_MATERIAL, i).startswith("robot/")]
    assert robot_mats and m.mat_specular[robot_mats].max() <= 0.2
    # and the surface is smooth: neighbouring pixels on the arm differ little (speckle made them jump)
    env.reset()
    img = env.render("agentview", 224, 224).astype(float)
    top = env.project("agentview", (0.0, 0.0, 0.33), 224, 224).astype(int)  # on link2/3, the arm's upper column
    patch = img[top[1] - 4:top[1] + 5, top[0] - 3:top[0] + 4].mean(axis=2)
    assert np.abs(np.diff(patch, axis=0)).mean() < 12
