"""Platform resolution (vla_adapter_ros.platforms): which parameters policy_node and executor_node get
for the real robot, the built-in MuJoCo sim, Gazebo and Isaac Sim, and what is refused.

Configuration level only: neither Gazebo nor Isaac Sim runs here."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from vla_adapter_ros.platforms import (
    NODES,
    PLATFORMS,
    PlatformError,
    platform_files,
    resolve_platform,
)
from vla_adapter_ros.paths import CHECKOUT_CONFIG as CONFIG_DIR

PANDA = [f"panda_joint{i}" for i in range(1, 8)]
FR3 = [f"fr3_joint{i}" for i in range(1, 8)]


def _params(platform, **kwargs):
    resolved = resolve_platform(platform, **kwargs)
    return resolved["policy_node"].params, resolved["executor_node"].params


@pytest.fixture
def config(tmp_path):
    """A copy of config/ to break on purpose."""
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    return tmp_path / "config"


def _edit(path: Path, node: str, **values):
    data = yaml.safe_load(path.read_text())
    data[node]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(data))


def test_gazebo():
    policy, executor = _params("gazebo")
    assert executor["output"] == "jtc"
    assert executor["jtc_topic"] == "joint_trajectory_controller/joint_trajectory"
    assert executor["robot"] == "fr3" and policy["arm_joint_names"] == FR3
    assert policy["use_sim_time"] is True and executor["use_sim_time"] is True
    assert policy["camera_topics"] == ["camera/agentview/image_raw", "camera/wrist/image_raw"]
    assert policy["joint_state_topic"] == executor["joint_state_topic"] == "joint_states"
    assert executor["auto_enable"] is False and executor["require_start_pose"] is True  # the safe defaults stay


def test_gazebo_with_a_panda_description():
    resolved = resolve_platform("gazebo", robot="panda")
    policy, executor = resolved["policy_node"].params, resolved["executor_node"].params
    assert policy["arm_joint_names"] == PANDA and executor["robot"] == "panda"
    # the platform's finger pattern (joint1 read twice: its mimic joint2 is not on /joint_states) is kept
    assert policy["finger_joint_names"] == ["panda_finger_joint1", "panda_finger_joint1"]
    assert executor["jtc_topic"] == "joint_trajectory_controller/joint_trajectory"
    assert resolved["executor_node"].overrides == {"robot": "panda"}  # what a launch file passes after the files


def test_isaac():
    policy, executor = _params("isaac")
    assert executor["output"] == "sim" and executor["sim_topic"] == "joint_command"  # sensor_msgs/JointState
    assert executor["robot"] == "panda" and policy["arm_joint_names"] == PANDA
    assert policy["finger_joint_names"] == ["panda_finger_joint1", "panda_finger_joint2"]
    assert policy["camera_topics"] == ["rgb", "wrist_rgb"]
    assert policy["use_sim_time"] is True and executor["use_sim_time"] is True
    assert executor["control_rate_hz"] == 60.0  # one control step per /clock message of the tutorial graph


def test_real_keeps_the_robot_defaults():
    policy, executor = _params("real")
    assert executor["robot"] == "fr3" and executor["output"] == "jtc"
    assert executor["jtc_topic"] == "fr3_arm_controller/joint_trajectory"
    assert executor["gripper_output"] == "franka"
    assert policy["use_sim_time"] is False and executor["use_sim_time"] is False
    assert executor["auto_enable"] is False and executor["dry_run"] is False


def test_mujoco_is_the_built_in_simulation_files():
    files = platform_files("mujoco")
    assert [p.name for p in files["policy_node"]] == ["policy_sim.yaml"]
    assert [p.name for p in files["executor_node"]] == ["executor_sim.yaml"]
    resolved = resolve_platform("mujoco")
    assert [p.name for p in resolved["executor_node"].files] == ["executor.yaml", "executor_sim.yaml"]
    assert resolved["policy_node"].params["eef_pose_topic"] == "eef_pose"
    assert resolved["executor_node"].params["auto_enable"] is True


@pytest.mark.parametrize("platform", ["gazebo", "isaac"])
def test_stack_file_passes_the_same_files(platform):
    from vla_adapter_ros.supervisor import load_stack

    resolved = resolve_platform(platform)
    stack = {s.name: s for s in load_stack(CONFIG_DIR / f"{platform}_stack.yaml")}
    assert set(stack) == set(NODES)  # no sim_node: the simulator provides the robot
    for node in NODES:
        assert stack[node].params == [p.resolve() for p in resolved[node].files]


def test_overrides_win_and_are_checked():
    resolved = resolve_platform("isaac", overrides={"executor_node": {"output": "jtc", "jtc_topic": "/x"},
                                                    "policy_node": {"camera_topics": ["/a", "/b"]}})
    assert resolved["executor_node"].params["output"] == "jtc"
    assert resolved["executor_node"].params["jtc_topic"] == "/x"
    assert resolved["policy_node"].params["camera_topics"] == ["/a", "/b"]
    with pytest.raises(PlatformError, match=r"overrides \[executor_node\].*'jtc_topik'"):
        resolve_platform("isaac", overrides={"executor_node": {"jtc_topik": "/x"}})
    with pytest.raises(PlatformError, match="unknown nodes.*'sim_node'"):
        resolve_platform("isaac", overrides={"sim_node": {"task": "reach_red"}})


def test_unknown_platform_lists_the_known_ones():
    with pytest.raises(PlatformError) as error:
        resolve_platform("gz_sim")
    assert "'gz_sim'" in str(error.value)
    for name in PLATFORMS:
        assert name in str(error.value)


def test_misspelled_key_is_named(config):
    _edit(config / "platforms" / "gazebo.yaml", "executor_node", jtc_topik="/x")
    with pytest.raises(PlatformError,
                       match=r"gazebo.yaml \[executor_node\]: not parameters of the node: \['jtc_topik'\]"):
        resolve_platform("gazebo", config_dir=config)


def test_misspelled_node_section_is_named(config):
    path = config / "platforms" / "isaac.yaml"
    data = yaml.safe_load(path.read_text())
    data["executor"] = data.pop("executor_node")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PlatformError, match=r"unknown node sections \['executor'\]"):
        resolve_platform("isaac", config_dir=config)


@pytest.mark.parametrize("key, value", [
    ("control_rate_hz", 60),            # int for a double: rclpy refuses it
    ("use_sim_time", "true"),           # a string, not a bool
    ("trajectory_points", 2.0),         # float for an integer
    ("sim_topic", ["/joint_command"]),  # list for a string
])
def test_wrong_type_is_refused(config, key, value):
    _edit(config / "platforms" / "isaac.yaml", "executor_node", **{key: value})
    with pytest.raises(PlatformError, match=f"wrong type: {key}="):
        resolve_platform("isaac", config_dir=config)


def test_joint_names_must_match_the_robot_file(config):
    _edit(config / "platforms" / "isaac.yaml", "executor_node", robot="fr3")  # panda_* names, fr3 limits
    with pytest.raises(PlatformError, match="differ from the joint names of executor_node's robot 'fr3'"):
        resolve_platform("isaac", config_dir=config)
    _edit(config / "platforms" / "isaac.yaml", "policy_node", arm_joint_names=PANDA[:6])
    with pytest.raises(PlatformError, match="7 distinct names"):
        resolve_platform("isaac", config_dir=config)


def test_nodes_must_agree_on_the_clock_and_joint_states(config):
    _edit(config / "platforms" / "gazebo.yaml", "policy_node", use_sim_time=False)
    with pytest.raises(PlatformError, match="disagree on use_sim_time"):
        resolve_platform("gazebo", config_dir=config)
    with pytest.raises(PlatformError, match="disagree on joint_state_topic"):
        resolve_platform("real", overrides={"policy_node": {"joint_state_topic": "/other"}})


def test_unknown_robot():
    with pytest.raises(PlatformError, match="robot 'ur5'.*bundled: fr3, fr3_sim, libero_panda, panda"):
        resolve_platform("gazebo", robot="ur5")


def test_robot_limits_file_by_path(tmp_path):
    data = yaml.safe_load((CONFIG_DIR / "robots" / "panda.yaml").read_text())
    data["joint_names"] = [f"fer_joint{i}" for i in range(1, 8)]  # franka_description's name for the Panda
    path = tmp_path / "fer.yaml"
    path.write_text(yaml.safe_dump(data))
    policy, executor = _params("gazebo", robot=str(path))
    assert policy["arm_joint_names"][0] == "fer_joint1" and policy["finger_joint_names"][0] == "fer_finger_joint1"
    assert executor["robot"] == str(path)


@pytest.mark.parametrize("platform", ["gazebo", "isaac", "real"])
def test_platform_files_are_ros_parameter_files_for_both_nodes(platform):
    data = yaml.safe_load((CONFIG_DIR / "platforms" / f"{platform}.yaml").read_text())
    assert set(data) == set(NODES)
    for node in NODES:
        assert isinstance(data[node]["ros__parameters"], dict)


def test_base_files_equal_the_node_defaults():
    """The resolver checks keys and types against the base files: they must be the nodes' DEFAULTS."""
    pytest.importorskip("rclpy")
    import importlib

    for node in NODES:
        defaults = importlib.import_module(f"vla_adapter_ros.nodes.{node}").DEFAULTS
        base = yaml.safe_load((CONFIG_DIR / f"{node.removesuffix('_node')}.yaml").read_text())
        assert base[node]["ros__parameters"] == defaults


def test_executor_output_modes_exist():
    """The outputs the platforms use are modes the executor has (JointState for Isaac's /joint_command)."""
    pytest.importorskip("rclpy")
    from vla_adapter_ros.nodes.executor_node import OUTPUTS

    for platform in PLATFORMS:
        assert _params(platform)[1]["output"] in OUTPUTS


@pytest.mark.ros
@pytest.mark.slow
def test_executor_with_the_isaac_file_drives_a_fake_isaac_articulation(processes, rclpy_context, tmp_path):
    """executor_node started with executor.yaml + platforms/isaac.yaml against a stand-in for Isaac
    Sim's bridge: /clock at 60 Hz of sim time, /joint_states with the 9 panda joints, position targets
    read from /joint_command (sensor_msgs/JointState). Not Isaac Sim itself: its protocol only."""
    rclpy = pytest.importorskip("rclpy")
    import sys

    import numpy as np
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from ros_harness import spin_until
    from sensor_msgs.msg import JointState
    from std_srvs.srv import SetBool

    from vla_adapter_ros.msg import ActionChunk, ExecutorStatus

    limits = yaml.safe_load((CONFIG_DIR / "robots" / "panda.yaml").read_text())
    limits.update(joint_state_timeout=0.5, chunk_max_age=10.0)  # a Python stand-in on a shared machine
    robot_file = tmp_path / "panda_test.yaml"
    robot_file.write_text(yaml.safe_dump(limits))
    test_file = tmp_path / "test.yaml"
    test_file.write_text(yaml.safe_dump({"executor_node": {"ros__parameters": {"robot": str(robot_file)}}}))
    files = [str(p) for p in resolve_platform("isaac")["executor_node"].files] + [str(test_file)]
    child = processes.start("executor_node", [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node",
                                              "--ros-args", *[a for f in files for a in ("--params-file", f)]])

    node = rclpy.create_node("fake_isaac", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    names = PANDA + ["panda_finger_joint1", "panda_finger_joint2"]
    state = {"q": np.array(limits["start_pose"] + [0.04, 0.04]), "t": 100.0}
    commands, status = [], []

    def stamp():
        sec = int(state["t"])
        return Time(sec=sec, nanosec=int(round((state["t"] - sec) * 1e9)))

    def tick():  # one rendered frame: advance sim time, publish /clock and the joint states
        state["t"] += 1.0 / 60.0
        clock_pub.publish(Clock(clock=stamp()))
        msg = JointState(name=names, position=state["q"].tolist())
        msg.header.stamp = stamp()
        js_pub.publish(msg)

    def on_command(msg):  # the articulation controller: position targets by joint name
        commands.append(msg)
        for name, position in zip(msg.name, msg.position):
            state["q"][names.index(name)] = position

    clock_pub = node.create_publisher(Clock, "/clock", 10)
    js_pub = node.create_publisher(JointState, "/joint_states", 10)
    chunk_pub = node.create_publisher(ActionChunk, "/vla/action_chunk", 10)
    node.create_subscription(JointState, "/joint_command", on_command, 50)
    node.create_subscription(ExecutorStatus, "/vla/executor/status", status.append, 10)
    node.create_timer(1.0 / 60.0, tick)
    try:
        child.wait_for_output("ready:", timeout=60)
        assert "output sim" in child.output() and "60 Hz" in child.output(), child.output()[-2000:]
        client = node.create_client(SetBool, "/executor_node/enable")
        assert spin_until(executor, client.service_is_ready, 30)
        deadline = time.monotonic() + 30
        while True:  # the executor enables only once the fake bridge's joint states reach it
            future = client.call_async(SetBool.Request(data=True))
            assert spin_until(executor, future.done, 15), "no answer from ~/enable"
            if future.result().success or time.monotonic() > deadline:
                break
            spin_until(executor, lambda: False, 0.5)
        assert future.result().success, future.result()

        ready = np.array(limits["start_pose"])
        target = ready + np.array([0.05, 0, 0, 0, 0, 0, 0])
        rows = np.linspace(ready, target, 21)[1:]  # 1 s of sim time at dt 0.05
        for _ in range(10):  # a chunk that arrives after its rows are over is rightly refused: retry
            accepted = status[-1].chunks_accepted if status else 0
            chunk = ActionChunk(action_space=ActionChunk.JOINT_POSITION, names=PANDA, horizon=20, action_dim=7,
                                dt=0.05, actions=rows.reshape(-1).tolist())
            chunk.header.stamp = stamp()
            chunk_pub.publish(chunk)
            if spin_until(executor, lambda: bool(status) and status[-1].chunks_accepted > accepted, 3.0):
                break
        assert spin_until(executor, lambda: np.max(np.abs(state["q"][:7] - target)) < 1e-3, 60), \
            (state["q"], status[-1] if status else None)
    finally:
        node.destroy_node()

    assert commands
    for msg in commands:
        assert list(msg.name) == PANDA and len(msg.position) == len(msg.velocity) == 7
    # the safety filter shapes these commands as any other output: per-step cap, soft limits
    positions = np.array([m.position for m in commands])
    assert np.max(np.abs(np.diff(positions, axis=0))) <= limits["max_step_rad"] + 1e-9
    assert np.all(positions >= np.array(limits["q_min"]) + limits["position_margin"] - 1e-9)
    assert np.all(positions <= np.array(limits["q_max"]) - limits["position_margin"] + 1e-9)
    assert child.alive()
