"""vla_adapter_ros.sim.ros_description: the URDF, TF frames and camera intrinsics that sim_node publishes for
RViz / Foxglove, checked against MuJoCo's own kinematics of the real scene."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from vla_adapter_ros.sim import ros_description as rd  # noqa: E402
from vla_adapter_ros.sim import scene  # noqa: E402

ARM_LINKS = [f"fr3_link{i}" for i in range(8)]
Q_TEST = np.array([0.3, -0.5, 0.2, -2.0, 0.4, 1.9, -0.6])  # away from zero in every joint
WIDTH_TEST = 0.05


@pytest.fixture(scope="module")
def sim():
    from vla_adapter_ros.sim.env import FrankaSimEnv

    env = FrankaSimEnv()
    env.reset(q0=Q_TEST, gripper_width=WIDTH_TEST, cube_poses={"red": (0.45, 0.1, 0.7)})
    yield env
    env.close()


@pytest.fixture(scope="module")
def frames(sim):
    return rd.sim_frames(sim.model)


@pytest.fixture(scope="module")
def robot(sim, frames):
    return ET.fromstring(rd.urdf(sim.model, description=frames))


# ------------------------------------------------------------------ small, independent kinematics
def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF: R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw),
                              math.sin(yaw))
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle(axis, angle: float) -> np.ndarray:
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def homogeneous(rot, pos) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, pos
    return t


def quat_xyzw_matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def urdf_link_poses(robot: ET.Element, positions: dict[str, float]) -> dict[str, np.ndarray]:
    """Every link's pose in the root link's frame, chaining the joint origins at the given joint positions."""
    joints = {j.find("child").get("link"): j for j in robot.iter("joint")}
    poses: dict[str, np.ndarray] = {}

    def pose(link: str) -> np.ndarray:
        if link not in poses:
            joint = joints.get(link)
            if joint is None:
                poses[link] = np.eye(4)  # the root
            else:
                origin = joint.find("origin")
                t = pose(joint.find("parent").get("link")) @ homogeneous(rpy_matrix(*floats(origin.get("rpy"))),
                                                                         floats(origin.get("xyz")))
                q = positions.get(joint.get("name"), 0.0)
                if joint.get("type") == "revolute":
                    t = t @ homogeneous(axis_angle(floats(joint.find("axis").get("xyz")), q), np.zeros(3))
                elif joint.get("type") == "prismatic":
                    t = t @ homogeneous(np.eye(3), q * floats(joint.find("axis").get("xyz")))
                poses[link] = t
        return poses[link]

    for link in robot.iter("link"):
        pose(link.get("name"))
    return poses


def tf_poses(transforms) -> dict[str, np.ndarray]:
    """Every frame's pose in the tree's root, chaining TF edges."""
    edges = {t.child: t for t in transforms}
    out: dict[str, np.ndarray] = {}

    def pose(frame: str) -> np.ndarray:
        if frame not in out:
            t = edges.get(frame)
            out[frame] = np.eye(4) if t is None else pose(t.parent) @ homogeneous(quat_xyzw_matrix(t.quat_xyzw), t.xyz)
        return out[frame]

    for frame in edges:
        pose(frame)
    return out


def joint_positions(sim) -> dict[str, float]:
    """What sim_node publishes on joint_states."""
    return dict(zip(sim.all_joint_names, np.concatenate([sim.joint_positions(), sim.finger_positions()])))


# ------------------------------------------------------------------ URDF
def test_urdf_links_and_joints(robot):
    links = [link.get("name") for link in robot.iter("link")]
    joints = {j.get("name"): j.get("type") for j in robot.iter("joint")}
    assert robot.get("name") == "fr3_sim"
    assert links[0] == "base"  # the root: sim_node's frame_id, MuJoCo's world == the robot base (link0)
    assert set(ARM_LINKS + ["fr3_leftfinger", "fr3_rightfinger", "fr3_hand_tcp"]) <= set(links)
    assert len(links) == len(set(links)) and len(joints) == len(links) - 1  # a tree
    assert {f"fr3_joint{i}": "revolute" for i in range(1, 8)}.items() <= joints.items()
    assert joints["fr3_finger_joint1"] == joints["fr3_finger_joint2"] == "prismatic"
    assert sum(t in ("revolute", "prismatic") for t in joints.values()) == 9
    assert not {"red_cube", "green_cube", "blue_cube"} & set(links)  # free objects: TF frames only
    children = {j.find("child").get("link") for j in robot.iter("joint")}
    assert set(links) - children == {"base"}


def test_urdf_joint_limits_are_mujocos(sim, robot):
    m = sim.model
    limits = {j.get("name"): j.find("limit") for j in robot.iter("joint") if j.get("type") != "fixed"}
    for i, internal in enumerate(scene.ARM_JOINTS_INTERNAL, 1):
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, internal)
        limit = limits[f"fr3_joint{i}"]
        assert (float(limit.get("lower")), float(limit.get("upper"))) == tuple(m.jnt_range[jid])
        assert float(limit.get("effort")) == scene.ARM_TORQUE_LIMIT[i - 1]
    np.testing.assert_array_equal(sim.q_min, [float(limits[f"fr3_joint{i}"].get("lower")) for i in range(1, 8)])
    # both finger joints as joint_states reports them: 0 .. 0.04 m each
    for name in ("fr3_finger_joint1", "fr3_finger_joint2"):
        assert (float(limits[name].get("lower")), float(limits[name].get("upper"))) == (0.0, scene.FINGER_MAX_M)


def test_urdf_chain_reproduces_mujoco_poses(sim, frames, robot):
    poses = urdf_link_poses(robot, joint_positions(sim))
    eef = sim.eef_pose()
    np.testing.assert_allclose(poses["fr3_hand_tcp"][:3, 3], eef.position, atol=1e-6)
    np.testing.assert_allclose(poses["fr3_hand_tcp"][:3, :3], eef.rotation, atol=1e-6)
    for body, link in frames.links.items():
        np.testing.assert_allclose(poses[link][:3, 3], sim.data.xpos[body], atol=1e-6, err_msg=link)
        np.testing.assert_allclose(poses[link][:3, :3], sim.data.xmat[body].reshape(3, 3), atol=1e-6, err_msg=link)
    # the gripper is really open WIDTH_TEST: the fingers' distance along the hand's y axis
    finger_gap = poses["fr3_leftfinger"][:3, 3] - poses["fr3_rightfinger"][:3, 3]
    assert np.linalg.norm(finger_gap) == pytest.approx(sim.gripper_width(), abs=1e-9)
    assert sim.gripper_width() == pytest.approx(WIDTH_TEST, abs=2e-3)


def test_urdf_visuals(sim, robot):
    visuals = {link.get("name"): link.findall("visual") for link in robot.iter("link")}
    # the table (boxes on the root, floor plane skipped), the robot's visual meshes (its collision meshes are
    # in a group the cameras do not draw)
    assert [v.find("geometry/box") is not None for v in visuals["base"]] == [True] * 5
    meshes = [v.find("geometry/mesh").get("filename") for link in ARM_LINKS for v in visuals[link]]
    assert meshes and all(f.startswith("file:///") and "collision" not in f for f in meshes)
    assert not any(f.endswith(("link0.stl", "link1.stl")) for f in meshes)  # robosuite's collision meshes
    table = visuals["base"][0].find("material/color").get("rgba")
    assert floats(table) == pytest.approx(sim.model.mat_rgba[mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_MATERIAL,
                                                                                 "table_mat")], abs=1e-4)
    # one colour per material name
    colours = {}
    for material in robot.iter("material"):
        assert colours.setdefault(material.get("name"), material.find("color").get("rgba")) == \
            material.find("color").get("rgba")


def test_mesh_visual_origin_places_the_file_vertices_where_mujoco_draws_them(sim, robot):
    """MuJoCo recentres a mesh on its centre of mass when it compiles: the URDF origin must undo that."""
    m, d = sim.model, sim.data
    body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "robot/link1")
    (geom,) = [g for g in range(m.ngeom) if m.geom_bodyid[g] == body and m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH
               and m.geom_group[g] == 1]
    mesh = m.geom_dataid[geom]
    (visual,) = next(link for link in robot.iter("link") if link.get("name") == "fr3_link1").findall("visual")
    path = visual.find("geometry/mesh").get("filename").removeprefix("file://")
    with open(path, encoding="utf-8") as f:  # an OBJ file: "v x y z" lines
        file_vertices = np.array([[float(v) for v in line.split()[1:4]] for line in f if line.startswith("v ")])
    file_vertices *= floats(visual.find("geometry/mesh").get("scale"))
    origin = visual.find("origin")
    world = homogeneous(d.xmat[body].reshape(3, 3), d.xpos[body]) @ homogeneous(
        rpy_matrix(*floats(origin.get("rpy"))), floats(origin.get("xyz")))
    ours = file_vertices @ world[:3, :3].T + world[:3, 3]
    compiled = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
    theirs = compiled @ d.geom_xmat[geom].reshape(3, 3).T + d.geom_xpos[geom]
    assert len(ours) == len(theirs)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)  # same vertex order in the OBJ and in MuJoCo


# ------------------------------------------------------------------ TF
def test_tf_tree_reproduces_mujoco_poses(sim, frames):
    transforms = rd.static_transforms(sim.model, frames) + rd.body_transforms(sim.model, sim.data, frames)
    children = [t.child for t in transforms]
    assert len(children) == len(set(children))
    poses = tf_poses(transforms)
    assert set(poses) == set(frames.links.values()) | {"fr3_hand_tcp", "agentview", "wrist", "red_cube", "green_cube",
                                                       "blue_cube"}
    eef = sim.eef_pose()
    np.testing.assert_allclose(poses["fr3_hand_tcp"], eef.matrix(), atol=1e-6)
    position, quat_xyzw = sim.cube_pose("red")
    np.testing.assert_allclose(poses["red_cube"][:3, 3], position, atol=1e-9)
    assert poses["red_cube"][:3, 3] == pytest.approx([0.45, 0.1, scene.CUBE_HALF_M])
    np.testing.assert_allclose(poses["red_cube"][:3, :3], quat_xyzw_matrix(quat_xyzw), atol=1e-9)
    # the moving frames are exactly the joint-driven links and the cubes (the cameras are fixed to their bodies)
    moving = {t.child for t in rd.body_transforms(sim.model, sim.data, frames)}
    assert moving == {f"fr3_link{i}" for i in range(1, 8)} | {"fr3_leftfinger", "fr3_rightfinger", "red_cube",
                                                              "green_cube", "blue_cube"}
    for t in transforms:
        assert np.linalg.norm(t.quat_xyzw) == pytest.approx(1.0) and t.quat_xyzw[3] >= 0


@pytest.mark.parametrize("camera", ["agentview", "wrist"])
def test_optical_frame_looks_along_z(sim, frames, camera):
    m, d = sim.model, sim.data
    poses = tf_poses(rd.static_transforms(m, frames) + rd.body_transforms(m, d, frames))
    cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, scene.camera_name(camera))
    mj = d.cam_xmat[cid].reshape(3, 3)  # columns: right, up, backwards (MuJoCo cameras look along -z)
    optical = poses[camera]
    np.testing.assert_allclose(optical[:3, 3], d.cam_xpos[cid], atol=1e-9)
    np.testing.assert_allclose(optical[:3, 2], -mj[:, 2], atol=1e-9)  # z: the viewing direction
    np.testing.assert_allclose(optical[:3, 0], mj[:, 0], atol=1e-9)  # x: image right
    np.testing.assert_allclose(optical[:3, 1], -mj[:, 1], atol=1e-9)  # y: image down


def test_agentview_looks_at_its_target(sim, frames):
    poses = tf_poses(rd.static_transforms(sim.model, frames))
    direction = np.subtract(scene.AGENTVIEW_TARGET, scene.AGENTVIEW_POS)
    np.testing.assert_allclose(poses["agentview"][:3, 2], direction / np.linalg.norm(direction), atol=1e-9)


def test_tf_prefix_names_every_frame(sim):
    prefixed = rd.sim_frames(sim.model, tf_prefix="left/")
    transforms = rd.static_transforms(sim.model, prefixed) + rd.body_transforms(sim.model, sim.data, prefixed)
    assert all(t.parent.startswith("left/") and t.child.startswith("left/") for t in transforms)
    robot = ET.fromstring(rd.urdf(sim.model, description=prefixed))
    assert all(link.get("name").startswith("left/") for link in robot.iter("link"))
    assert {"left/base", "left/agentview", "left/red_cube", "left/fr3_hand_tcp"} <= {t.child for t in transforms} | {
        "left/base"}


# ------------------------------------------------------------------ cameras
def test_camera_info_from_fovy():
    model = scene.build_model()
    info = rd.camera_info(model, "agentview", 640, 480)
    assert scene.AGENTVIEW_FOVY_DEG == 45.0
    f = 579.411254969543  # 240 / tan(22.5 deg), by hand: the vertical field of view spans 480 rows
    assert info["k"] == pytest.approx([f, 0, 319.5, 0, f, 239.5, 0, 0, 1], abs=1e-9)
    assert info["p"] == pytest.approx([f, 0, 319.5, 0, 0, f, 239.5, 0, 0, 0, 1, 0], abs=1e-9)
    assert info["r"] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert info["d"] == [0.0] * 5 and info["distortion_model"] == "plumb_bob"
    assert (info["width"], info["height"]) == (640, 480)
    wrist = rd.camera_info(model, "wrist", 64, 48)  # the public name finds robot/wrist
    assert wrist["k"][4] == pytest.approx(24 / math.tan(math.radians(scene.WRIST_FOVY_DEG / 2)))
    with pytest.raises(ValueError, match="no camera 'nope'"):
        rd.camera_info(model, "nope", 64, 48)


@pytest.mark.parametrize("camera", ["agentview", "wrist"])
def test_camera_info_and_tf_project_like_the_renderer(sim, frames, camera):
    """K and the optical frame project a point where env.project puts it, half a pixel apart: env.project
    counts from the image's edge, CameraInfo from the first pixel's centre."""
    width, height = 160, 120
    info = rd.camera_info(sim.model, camera, width, height)
    k = np.array(info["k"]).reshape(3, 3)
    transforms = rd.static_transforms(sim.model, frames) + rd.body_transforms(sim.model, sim.data, frames)
    optical = tf_poses(transforms)[camera]
    point = sim.eef_pose().position + ([0.0, 0.0, -0.05] if camera == "wrist" else [0.0, 0.0, 0.0])
    local = optical[:3, :3].T @ (point - optical[:3, 3])
    assert local[2] > 0  # in front of the camera
    uv = (k @ local)[:2] / local[2]
    np.testing.assert_allclose(uv, sim.project(camera, point, width, height) - 0.5, atol=1e-6)


def test_camera_info_topic():
    assert rd.camera_info_topic("camera/agentview/image_raw") == "camera/agentview/camera_info"
    assert rd.camera_info_topic("/cam/image") == "/cam/camera_info"
    assert rd.camera_info_topic("image") == "camera_info"


# ------------------------------------------------------------------ sim_node over real middleware
CONFIG = Path(__file__).resolve().parents[1] / "config"


def _start_sim(processes, tmp_path, extra: str = ""):
    params = tmp_path / "sim.yaml"
    params.write_text("sim_node:\n  ros__parameters:\n    camera_rate_hz: 5.0\n    image_width: 64\n"
                      "    image_height: 48\n" + extra)
    child = processes.start("sim_node", [sys.executable, "-m", "vla_adapter_ros.nodes.sim_node", "--ros-args",
                                         "--params-file", str(CONFIG / "sim.yaml"), "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=240)
    return child


def _stamp(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def test_tf_message_fields(monkeypatch):
    """The TFMessage that sim_node builds (checked without tf2_msgs: a stand-in with its one field)."""
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time

    from vla_adapter_ros.nodes import sim_node

    class FakeTFMessage:
        def __init__(self):
            self.transforms = []

    monkeypatch.setattr(sim_node, "TFMessage", FakeTFMessage)
    stamp = Time(sec=3, nanosec=5)
    msg = sim_node.SimNode._tf_message(stamp, [rd.Transform("base", "cube", (1.0, 2.0, 3.0), (0.0, 0.0, 0.6, 0.8))])
    (t,) = msg.transforms
    assert (t.header.stamp, t.header.frame_id, t.child_frame_id) == (stamp, "base", "cube")
    assert (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z) == (1.0, 2.0, 3.0)
    rot = t.transform.rotation
    assert (rot.x, rot.y, rot.z, rot.w) == (0.0, 0.0, 0.6, 0.8)


@pytest.mark.ros
@pytest.mark.slow
def test_sim_node_publishes_robot_description_and_camera_info(processes, rclpy_context, tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import String

    from ros_harness import spin_until
    from vla_adapter_ros.nodes.sim_node import NO_TF, TFMessage

    child = _start_sim(processes, tmp_path, '    tf_prefix: "left/"\n')
    node = rclpy.create_node("observer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    images: dict[str, list] = {"agentview": [], "wrist": []}
    infos: dict[str, list] = {"agentview": [], "wrist": []}
    poses: list = []
    for name in images:
        node.create_subscription(Image, f"/camera/{name}/image_raw", images[name].append, 10)
        node.create_subscription(CameraInfo, f"/camera/{name}/camera_info", infos[name].append, 10)
    node.create_subscription(PoseStamped, "/eef_pose", poses.append, 10)

    def matched() -> set[int]:
        return {_stamp(m.header) for m in images["agentview"]} & {_stamp(m.header) for m in infos["agentview"]}

    assert spin_until(executor, lambda: len(matched()) >= 2 and infos["wrist"] and poses, 90), child.output()[-2000:]
    for name, fovy in (("agentview", scene.AGENTVIEW_FOVY_DEG), ("wrist", scene.WRIST_FOVY_DEG)):
        by_stamp = {_stamp(m.header): m for m in images[name]}
        for info in infos[name]:
            image = by_stamp.get(_stamp(info.header))
            if image is None:
                continue  # its image came before our subscription matched
            assert info.header.frame_id == image.header.frame_id == f"left/{name}"
            assert (info.width, info.height) == (image.width, image.height) == (64, 48)
            f = 24 / math.tan(math.radians(fovy / 2))
            assert list(info.k) == pytest.approx([f, 0, 31.5, 0, f, 23.5, 0, 0, 1])
            assert list(info.p) == pytest.approx([f, 0, 31.5, 0, 0, f, 23.5, 0, 0, 0, 1, 0])
            assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
    assert poses[-1].header.frame_id == "left/base"

    # published once at the start: a subscriber that comes later gets it only through transient local
    descriptions: list = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/robot_description", descriptions.append, latched)
    assert spin_until(executor, lambda: descriptions, 30), child.output()[-2000:]
    executor.spin_once(timeout_sec=0.5)
    assert len(descriptions) == 1
    robot = ET.fromstring(descriptions[0].data)
    links = [link.get("name") for link in robot.iter("link")]
    assert links[0] == "left/base" and "left/fr3_hand_tcp" in links and "left/fr3_link7" in links
    assert {j.get("name") for j in robot.iter("joint") if j.get("type") == "revolute"} == {
        f"fr3_joint{i}" for i in range(1, 8)}  # joint names: as on joint_states
    if TFMessage is None:
        assert child.output().count(NO_TF) == 1
    else:
        assert NO_TF not in child.output()
    assert child.alive()
    node.destroy_node()


@pytest.mark.ros
@pytest.mark.slow
def test_sim_node_publishes_tf(processes, rclpy_context, tmp_path):
    """/tf and /tf_static (a ROS install: tf2_msgs has no pip wheel): chaining them gives eef_pose."""
    pytest.importorskip("tf2_msgs", reason="tf2_msgs is not installed (it comes with every ROS 2 install)")
    rclpy = pytest.importorskip("rclpy")
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    from ros_harness import spin_until

    child = _start_sim(processes, tmp_path)
    node = rclpy.create_node("observer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    static, dynamic, images, poses = [], [], [], []
    node.create_subscription(TFMessage, "/tf_static", static.append,
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.create_subscription(TFMessage, "/tf", dynamic.append, 100)
    node.create_subscription(Image, "/camera/agentview/image_raw", images.append, 10)
    node.create_subscription(PoseStamped, "/eef_pose", poses.append, 1000)
    assert spin_until(executor, lambda: static and len(dynamic) >= 3, 90), child.output()[-2000:]
    fixed = {t.child_frame_id: t for msg in static for t in msg.transforms}
    assert {"fr3_link0", "fr3_hand_tcp", "agentview", "wrist"} <= set(fixed)
    assert fixed["agentview"].header.frame_id == "base" and fixed["wrist"].header.frame_id == "fr3_right_hand"
    assert spin_until(executor, lambda: images and any(_stamp(m.transforms[0].header) == _stamp(images[-1].header)
                                                       for m in dynamic), 30)  # TF at every image's stamp
    last = dynamic[-1]
    moving = {t.child_frame_id: t for t in last.transforms}
    assert {f"fr3_link{i}" for i in range(1, 8)} | {"fr3_leftfinger", "fr3_rightfinger", "red_cube"} <= set(moving)
    stamp = _stamp(last.transforms[0].header)
    assert all(_stamp(t.header) == stamp for t in last.transforms)
    assert spin_until(executor, lambda: any(_stamp(p.header) == stamp for p in poses), 10)
    pose = next(p for p in poses if _stamp(p.header) == stamp)
    edges = {**fixed, **moving}
    chain = tf_poses([rd.Transform(t.header.frame_id, child, (t.transform.translation.x, t.transform.translation.y,
                                                              t.transform.translation.z),
                                   (t.transform.rotation.x, t.transform.rotation.y, t.transform.rotation.z,
                                    t.transform.rotation.w)) for child, t in edges.items()])
    tcp = chain["fr3_hand_tcp"]
    p, q = pose.pose.position, pose.pose.orientation
    np.testing.assert_allclose(tcp[:3, 3], [p.x, p.y, p.z], atol=1e-6)
    np.testing.assert_allclose(tcp[:3, :3], quat_xyzw_matrix([q.x, q.y, q.z, q.w]), atol=1e-6)
    assert child.alive()
    node.destroy_node()
