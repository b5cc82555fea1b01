"""launch/*.launch.py evaluated against stand-ins of the launch API (launch and launch_ros are not
on PyPI; the files are also checked with the real `ros2 launch` outside CI). Checks what the
files compute: node set, executables, parameter files, argument handling, safe defaults."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from vla_adapter_ros.platforms import PLATFORMS

REPO = Path(__file__).resolve().parents[1]


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


class _Context:
    def __init__(self, configurations):
        self.launch_configurations = configurations


@pytest.fixture
def launch_api(monkeypatch):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorded,), {})
    actions.OpaqueFunction = type("OpaqueFunction", (_Recorded,), {})
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = _LaunchConfiguration
    launch.actions, launch.substitutions = actions, substitutions
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorded,), {})
    launch_ros.actions = ros_actions
    for name, module in {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
                         "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, module)
    ament = pytest.importorskip("ament_index_python.packages")
    monkeypatch.setattr(ament, "get_package_share_directory", lambda package: str(REPO))


def _evaluate(path: Path, **overrides):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    declared = {e.kwargs.get("name", e.args[0] if e.args else None): e.kwargs["default_value"]
                for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    unknown = set(overrides) - set(declared)
    assert not unknown, f"not declared: {unknown}"
    context = _Context({**declared, **overrides})
    nodes = []
    for entity in entities:
        if type(entity).__name__ == "OpaqueFunction":
            nodes += entity.kwargs["function"](context)
    return declared, {n.kwargs["name"]: n.kwargs for n in nodes}


def _files(params):
    return [Path(p).name for p in params if isinstance(p, str)]


def _merged(params):
    merged = {}
    for p in params:
        if isinstance(p, dict):
            merged.update(p)
    return merged


def _effective(name, params):
    """What the node ends up with: its sections of the parameter files and the dicts, in order."""
    effective = {}
    for p in params:
        if isinstance(p, str):
            effective.update(yaml.safe_load(Path(p).read_text()).get(name, {}).get("ros__parameters", {}))
        else:
            effective.update(p)
    return effective


def test_sim_launch_matches_the_stack_file(launch_api):
    from vla_adapter_ros.supervisor import load_stack

    _, nodes = _evaluate(REPO / "launch" / "sim.launch.py", task="lift_green", seed="5")
    stack = {s.name: s for s in load_stack(REPO / "config" / "sim_stack.yaml")}
    assert set(nodes) == set(stack)
    for name, node in nodes.items():
        assert node["package"] == "vla_adapter_ros"
        assert (REPO / "scripts" / "nodes" / node["executable"]).is_file()
        assert _files(node["parameters"]) == [p.name for p in stack[name].params]
        for p in node["parameters"]:
            if isinstance(p, str):
                assert Path(p).is_file(), p
    assert _merged(nodes["sim_node"]["parameters"]) == {"task": "lift_green", "seed": 5, "camera_rate_hz": 10.0}


def test_franka_launch_defaults_are_safe(launch_api):
    declared, nodes = _evaluate(REPO / "launch" / "franka.launch.py")
    assert declared["platform"] == "real"
    assert set(nodes) == {"policy_node", "executor_node"}
    assert _merged(nodes["executor_node"]["parameters"])["auto_enable"] is False  # explicit in the launch
    executor = _effective("executor_node", nodes["executor_node"]["parameters"])
    assert executor["auto_enable"] is False and executor["dry_run"] is False  # waits for ~/enable
    assert executor["require_start_pose"] is True
    # the values this launch file has always given the real robot
    assert executor["robot"] == "fr3" and executor["output"] == "jtc"
    assert executor["jtc_topic"] == "/fr3_arm_controller/joint_trajectory"
    assert executor["gripper_output"] == "franka" and executor["use_sim_time"] is False
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert policy["arm_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)]
    assert policy["finger_joint_names"] == ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert policy["camera_topics"] == ["/camera/agentview/image_raw", "/camera/wrist/image_raw"]
    assert policy["joint_state_topic"] == "/joint_states" and policy["eef_pose_topic"] == ""
    assert policy["use_sim_time"] is False
    assert _files(nodes["policy_node"]["parameters"]) == ["policy.yaml", "real.yaml"]


def test_franka_launch_arguments_reach_the_nodes(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", robot_type="panda", controller="forward",
                         dry_run="true", use_sim_time="True", checkpoint="/ckpt",
                         agentview_topic="/a", wrist_topic="/w", policy_params="/extra.yaml")
    executor = _merged(nodes["executor_node"]["parameters"])
    policy = _merged(nodes["policy_node"]["parameters"])
    assert executor["robot"] == "panda" and executor["output"] == "forward"
    assert executor["dry_run"] is True and executor["use_sim_time"] is True
    assert policy["arm_joint_names"] == [f"panda_joint{i}" for i in range(1, 8)]
    assert policy["finger_joint_names"] == ["panda_finger_joint1", "panda_finger_joint2"]
    assert policy["checkpoint"] == "/ckpt" and policy["camera_topics"] == ["/a", "/w"]
    assert nodes["policy_node"]["parameters"][-1] == "/extra.yaml"  # later files win
    from vla_adapter_ros.control import load_robot_limits

    assert load_robot_limits("panda").joint_names[0] == "panda_joint1"


def test_launch_parameters_are_declared_by_the_nodes(launch_api):
    """Every key a launch file sets is a parameter the node declares (no silent typos)."""
    pytest.importorskip("rclpy")
    import importlib

    runs = [("sim.launch.py", {})] + [("franka.launch.py", {"platform": p}) for p in PLATFORMS]
    for launch_file, arguments in runs:
        _, nodes = _evaluate(REPO / "launch" / launch_file, **arguments)
        for name, node in nodes.items():
            defaults = importlib.import_module(f"vla_adapter_ros.nodes.{name}").DEFAULTS
            keys = set(_effective(name, node["parameters"])) - {"use_sim_time"}
            assert keys <= set(defaults), f"{launch_file} {arguments} {name}: {keys - set(defaults)}"


@pytest.mark.parametrize("platform", ["gazebo", "isaac"])
def test_franka_launch_platform_matches_its_stack_file(launch_api, platform):
    """platform:=X passes the same parameter files as `vla-adapter-ros up config/X_stack.yaml`."""
    from vla_adapter_ros.supervisor import load_stack

    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform=platform)
    stack = {s.name: s for s in load_stack(REPO / "config" / f"{platform}_stack.yaml")}
    assert set(nodes) == set(stack) == {"policy_node", "executor_node"}
    for name, node in nodes.items():
        files = [Path(p) for p in node["parameters"] if isinstance(p, str)]
        assert [f.resolve() for f in files] == stack[name].params
        assert files[-1].parent.name == "platforms"
        # the launch adds only its safety defaults and the model choice on top of the files
        assert set(_merged(node["parameters"])) <= {"checkpoint", "device", "dry_run", "auto_enable"}


def test_franka_launch_gazebo(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="gazebo", checkpoint="/ckpt")
    executor = _effective("executor_node", nodes["executor_node"]["parameters"])
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert executor["output"] == "jtc"
    assert executor["jtc_topic"] == "/joint_trajectory_controller/joint_trajectory"
    assert executor["use_sim_time"] is True and policy["use_sim_time"] is True
    assert executor["auto_enable"] is False and executor["dry_run"] is False  # still waits for ~/enable
    assert policy["arm_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)] and executor["robot"] == "fr3"
    assert policy["camera_topics"] == ["/camera/agentview/image_raw", "/camera/wrist/image_raw"]
    assert policy["checkpoint"] == "/ckpt"


def test_franka_launch_isaac_with_panda_joint_names(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="isaac")
    executor = _effective("executor_node", nodes["executor_node"]["parameters"])
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert executor["output"] == "sim" and executor["sim_topic"] == "/joint_command"
    assert executor["robot"] == "panda" and executor["use_sim_time"] is True
    assert policy["arm_joint_names"] == [f"panda_joint{i}" for i in range(1, 8)]
    assert policy["finger_joint_names"] == ["panda_finger_joint1", "panda_finger_joint2"]
    assert policy["camera_topics"] == ["/rgb", "/wrist_rgb"] and policy["use_sim_time"] is True


def test_franka_launch_arguments_override_the_platform(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="isaac", controller="jtc",
                         jtc_topic="/panda_arm_controller/joint_trajectory", wrist_topic="/hand_cam",
                         robot_type="fr3", use_sim_time="false", executor_params="/mine.yaml")
    executor = _effective("executor_node", nodes["executor_node"]["parameters"][:-1])
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert executor["output"] == "jtc" and executor["jtc_topic"] == "/panda_arm_controller/joint_trajectory"
    assert policy["camera_topics"] == ["/rgb", "/hand_cam"]  # the platform's agentview, the given wrist
    assert executor["robot"] == "fr3" and policy["arm_joint_names"][0] == "fr3_joint1"
    assert policy["finger_joint_names"] == ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert executor["use_sim_time"] is False and policy["use_sim_time"] is False
    assert nodes["executor_node"]["parameters"][-1] == "/mine.yaml"


def test_franka_launch_rejects_an_unknown_platform(launch_api):
    from vla_adapter_ros.platforms import PlatformError

    with pytest.raises(PlatformError, match="known platforms: real, mujoco, gazebo, isaac"):
        _evaluate(REPO / "launch" / "franka.launch.py", platform="gz")
