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
    assert set(nodes) == {"policy_node", "executor_node"}
    executor = _merged(nodes["executor_node"]["parameters"])
    assert executor["auto_enable"] is False and executor["dry_run"] is False  # waits for ~/enable
    assert executor["robot"] == "fr3" and executor["output"] == "jtc"
    executor_yaml = yaml.safe_load((REPO / "config" / "executor.yaml").read_text())["executor_node"]["ros__parameters"]
    assert executor_yaml["require_start_pose"] is True
    policy = _merged(nodes["policy_node"]["parameters"])
    assert policy["arm_joint_names"][0] == "fr3_joint1"
    assert policy["camera_topics"] == ["/camera/agentview/image_raw", "/camera/wrist/image_raw"]
    assert _files(nodes["policy_node"]["parameters"]) == ["policy.yaml"]


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

    for launch_file in ("franka.launch.py", "sim.launch.py"):
        _, nodes = _evaluate(REPO / "launch" / launch_file)
        for name, node in nodes.items():
            defaults = importlib.import_module(f"vla_adapter_ros.nodes.{name}").DEFAULTS
            keys = set(_merged(node["parameters"])) - {"use_sim_time"}
            assert keys <= set(defaults), f"{launch_file} {name}: {keys - set(defaults)}"
