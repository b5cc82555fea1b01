"""launch/*.launch.py evaluated against stand-ins of the launch API (launch and launch_ros are not
on PyPI; the files are also checked with the real `ros2 launch` outside CI). Checks what the
files compute: node set, executables, parameter files, argument handling, safe defaults. The
argument validation itself (vla_adapter_ros/launch_args.py) is pure Python and tested directly; a
last test uses the real launch API when it is importable (skipped otherwise)."""

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


class LaunchRefused(Exception):
    """What the real launch does with a value outside a DeclareLaunchArgument's choices."""


@pytest.fixture
def launch_api(monkeypatch):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)
    actions = types.ModuleType("launch.actions")
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler", "Shutdown", "LogInfo"):
        setattr(actions, name, type(name, (_Recorded,), {}))
    event_handlers = types.ModuleType("launch.event_handlers")
    for name in ("OnProcessExit", "OnProcessIO"):
        setattr(event_handlers, name, type(name, (_Recorded,), {}))
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = _LaunchConfiguration
    launch.actions, launch.substitutions, launch.event_handlers = actions, substitutions, event_handlers
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorded,), {})
    launch_ros.actions = ros_actions
    for name, module in {"launch": launch, "launch.actions": actions, "launch.substitutions": substitutions,
                         "launch.event_handlers": event_handlers,
                         "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, module)
    ament = pytest.importorskip("ament_index_python.packages")
    monkeypatch.setattr(ament, "get_package_share_directory", lambda package: str(REPO))
    # franka_ros2 is not installed here; tests of its absence patch this back
    monkeypatch.setattr("vla_adapter_ros.launch_args.franka_msgs_available", lambda: True)


def _actions(path: Path, **overrides):
    """Every action the launch file's OpaqueFunction returns, for these argument values."""
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    arguments = [e for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    declared = {e.kwargs.get("name", e.args[0] if e.args else None): e.kwargs["default_value"] for e in arguments}
    unknown = set(overrides) - set(declared)
    assert not unknown, f"not declared: {unknown}"
    for e in arguments:  # as the real launch does before anything runs
        name, choices = e.args[0], e.kwargs.get("choices")
        if choices is not None:
            assert e.kwargs["default_value"] in choices, name
            if name in overrides and overrides[name] not in choices:
                raise LaunchRefused(f"{name}: {overrides[name]!r} not in {choices}")
    context = _Context({**declared, **overrides})
    actions = []
    for entity in entities:
        if type(entity).__name__ == "OpaqueFunction":
            actions += entity.kwargs["function"](context)
    return declared, actions


def _evaluate(path: Path, **overrides):
    declared, actions = _actions(path, **overrides)
    return declared, {a.kwargs["name"]: a.kwargs for a in actions if type(a).__name__ == "Node"}


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
    # the policy gets the task's instruction (vla_adapter_ros/sim/tasks.py)
    assert _merged(nodes["policy_node"]["parameters"])["instruction"] == "lift the green cube"


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
    # relative names: the root namespace gives /fr3_arm_controller/joint_trajectory, namespace:=robot1 moves them
    assert executor["jtc_topic"] == "fr3_arm_controller/joint_trajectory"
    assert "namespace" not in nodes["executor_node"] and "namespace" not in nodes["policy_node"]
    assert executor["gripper_output"] == "franka" and executor["use_sim_time"] is False
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert policy["arm_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)]
    assert policy["finger_joint_names"] == ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert policy["camera_topics"] == ["camera/agentview/image_raw", "camera/wrist/image_raw"]
    assert policy["joint_state_topic"] == "joint_states" and policy["eef_pose_topic"] == ""
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
            params = importlib.import_module(f"vla_adapter_ros.nodes.{name}").PARAMETERS
            for key, value in _effective(name, node["parameters"]).items():  # and a value the node takes
                if key in params and params[key].choices:
                    assert value in params[key].choices, (launch_file, name, key, value)


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
    assert executor["jtc_topic"] == "joint_trajectory_controller/joint_trajectory"
    assert executor["use_sim_time"] is True and policy["use_sim_time"] is True
    assert executor["auto_enable"] is False and executor["dry_run"] is False  # still waits for ~/enable
    assert policy["arm_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)] and executor["robot"] == "fr3"
    assert policy["camera_topics"] == ["camera/agentview/image_raw", "camera/wrist/image_raw"]
    assert policy["checkpoint"] == "/ckpt"


def test_franka_launch_isaac_with_panda_joint_names(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="isaac")
    executor = _effective("executor_node", nodes["executor_node"]["parameters"])
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert executor["output"] == "sim" and executor["sim_topic"] == "joint_command"
    assert executor["robot"] == "panda" and executor["use_sim_time"] is True
    assert policy["arm_joint_names"] == [f"panda_joint{i}" for i in range(1, 8)]
    assert policy["finger_joint_names"] == ["panda_finger_joint1", "panda_finger_joint2"]
    assert policy["camera_topics"] == ["rgb", "wrist_rgb"] and policy["use_sim_time"] is True


def test_franka_launch_arguments_override_the_platform(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="isaac", controller="jtc",
                         jtc_topic="/panda_arm_controller/joint_trajectory", wrist_topic="/hand_cam",
                         robot_type="fr3", use_sim_time="false", executor_params="/mine.yaml")
    executor = _effective("executor_node", nodes["executor_node"]["parameters"][:-1])
    policy = _effective("policy_node", nodes["policy_node"]["parameters"])
    assert executor["output"] == "jtc" and executor["jtc_topic"] == "/panda_arm_controller/joint_trajectory"
    assert policy["camera_topics"] == ["rgb", "/hand_cam"]  # the platform's agentview, the given wrist
    assert executor["robot"] == "fr3" and policy["arm_joint_names"][0] == "fr3_joint1"
    assert policy["finger_joint_names"] == ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert executor["use_sim_time"] is False and policy["use_sim_time"] is False
    assert nodes["executor_node"]["parameters"][-1] == "/mine.yaml"


def test_franka_launch_rejects_an_unknown_platform(launch_api):
    from vla_adapter_ros.launch_args import FRANKA_ARGUMENTS, LaunchArgumentError, validate

    with pytest.raises(LaunchRefused, match="platform"):  # the declared choices (the real launch refuses)
        _evaluate(REPO / "launch" / "franka.launch.py", platform="gz")
    with pytest.raises(LaunchArgumentError, match="'gz' is not one of real, mujoco, gazebo, isaac"):
        validate(FRANKA_ARGUMENTS, {"platform": "gz"})


# ------------------------------------------------------------------------------ argument validation
def test_strict_booleans():
    from vla_adapter_ros.launch_args import LaunchArgumentError, parse_bool

    assert parse_bool("dry_run", "true") is True and parse_bool("dry_run", "TRUE") is True
    assert parse_bool("dry_run", "False") is False and parse_bool("dry_run", " false ") is False
    for bad in ("ture", "yes", "1", "on", "", "perhaps"):
        with pytest.raises(LaunchArgumentError, match=f"launch argument dry_run: expected true or false, got {bad!r}"):
            parse_bool("dry_run", bad)


def test_validate_names_every_bad_argument():
    from vla_adapter_ros.launch_args import FRANKA_ARGUMENTS, LaunchArgumentError, validate

    defaults = {a.name: a.default for a in FRANKA_ARGUMENTS}
    typed = validate(FRANKA_ARGUMENTS, defaults)
    assert typed["dry_run"] is False and typed["auto_enable"] is False and typed["use_sim_time"] is None
    assert typed["controller"] is None and typed["gripper_output"] is None and typed["device"] == "auto"
    typed = validate(FRANKA_ARGUMENTS, {**defaults, "use_sim_time": "True", "device": "cuda:1", "controller": "sim"})
    assert typed["use_sim_time"] is True and typed["device"] == "cuda:1" and typed["controller"] == "sim"
    bad = {**defaults, "dry_run": "ture", "use_sim_time": "perhaps", "controller": "bogus",
           "gripper_output": "magic", "device": "tpu", "platform": "gz"}
    with pytest.raises(LaunchArgumentError) as info:
        validate(FRANKA_ARGUMENTS, bad)
    text = str(info.value)
    for name in ("dry_run", "use_sim_time", "controller", "gripper_output", "device", "platform"):
        assert f"launch argument {name}:" in text, text
    assert "'bogus' is not one of , jtc, forward, sim" in text


def test_numbers_and_tasks():
    from vla_adapter_ros.launch_args import LIBERO_ARGUMENTS, SIM_ARGUMENTS, LaunchArgumentError, validate

    sim = {a.name: a.default for a in SIM_ARGUMENTS}
    assert validate(SIM_ARGUMENTS, {**sim, "seed": "3"})["seed"] == 3
    for key, value, message in (("seed", "x", "expected an integer"), ("seed", "-1", "must be >= 0"),
                                ("camera_rate_hz", "0", "must be >= 0.1"), ("task", "lift_red", "not one of")):
        with pytest.raises(LaunchArgumentError, match=f"launch argument {key}: .*{message}"):
            validate(SIM_ARGUMENTS, {**sim, key: value})
    libero = {a.name: a.default for a in LIBERO_ARGUMENTS}
    assert validate(LIBERO_ARGUMENTS, {**libero, "max_steps": "300"})["max_steps"] == 300


def test_exit_reason_carries_the_fatal_line():
    from vla_adapter_ros.launch_args import exit_reason, fatal_line

    out = ("[INFO] [1.0] [executor_node]: hello\n"
           "[FATAL] executor_node: cannot start: RuntimeError: gripper_output 'franka' needs franka_msgs\n")
    line = fatal_line(out)
    assert line == "executor_node: cannot start: RuntimeError: gripper_output 'franka' needs franka_msgs"
    assert fatal_line("[FATAL] [12.5] [policy_node]: policy_node: cannot start: x") == "policy_node: cannot start: x"
    assert fatal_line("all fine\n") == ""
    assert exit_reason("executor_node", 1, line) == f"executor_node exited with code 1: {line}"
    assert exit_reason("sim_node", -9) == "sim_node exited with code -9"


# ------------------------------------------------------------------------------ the launch files
@pytest.mark.parametrize("arguments, name", [
    ({"dry_run": "ture"}, "dry_run"), ({"use_sim_time": "perhaps"}, "use_sim_time"),
    ({"auto_enable": "yes"}, "auto_enable"), ({"device": "tpu"}, "device"),
])
def test_franka_launch_refuses_bad_values_before_starting_anything(launch_api, arguments, name):
    from vla_adapter_ros.launch_args import LaunchArgumentError

    with pytest.raises(LaunchArgumentError, match=f"launch argument {name}:"):
        _evaluate(REPO / "launch" / "franka.launch.py", **arguments)


@pytest.mark.parametrize("arguments", [{"controller": "bogus"}, {"gripper_output": "magic"}, {"platform": "gz"}])
def test_franka_launch_declares_choices(launch_api, arguments):
    with pytest.raises(LaunchRefused):
        _evaluate(REPO / "launch" / "franka.launch.py", **arguments)


@pytest.mark.parametrize("launch_file, arguments", [
    ("sim.launch.py", {"task": "bogus"}), ("sim.launch.py", {"device": "tpu"}), ("sim.launch.py", {"seed": "x"}),
    ("libero.launch.py", {"init_state": "first"}), ("libero.launch.py", {"device": "gpu"}),
])
def test_sim_and_libero_launch_refuse_bad_values(launch_api, launch_file, arguments):
    from vla_adapter_ros.launch_args import LaunchArgumentError

    with pytest.raises((LaunchArgumentError, LaunchRefused)):
        _evaluate(REPO / "launch" / launch_file, **arguments)


def test_franka_launch_without_franka_ros2_stops_with_one_line(launch_api, monkeypatch):
    """The real platform's default gripper needs franka_msgs: without it the launch refuses to start
    (rather than run the arm without its gripper); none / topic / auto are the ways out."""
    from vla_adapter_ros.launch_args import LaunchArgumentError

    monkeypatch.setattr("vla_adapter_ros.launch_args.franka_msgs_available", lambda: False)
    with pytest.raises(LaunchArgumentError, match="gripper_output 'franka' .* needs franka_msgs") as info:
        _evaluate(REPO / "launch" / "franka.launch.py")
    assert "\n" not in str(info.value)
    for choice in ("none", "topic", "auto"):
        _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", gripper_output=choice)
        assert _merged(nodes["executor_node"]["parameters"])["gripper_output"] == choice
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", platform="gazebo")  # topic: no franka_msgs needed
    assert set(nodes) == {"policy_node", "executor_node"}
    extra = REPO / "config" / "platforms" / "gazebo.yaml"  # a file that picks another gripper output
    _, nodes = _evaluate(REPO / "launch" / "franka.launch.py", executor_params=str(extra))
    assert nodes["executor_node"]["parameters"][-1] == str(extra)


@pytest.mark.parametrize("launch_file", ["sim.launch.py", "franka.launch.py", "libero.launch.py", "sim_pair.launch.py"])
def test_every_node_is_required(launch_api, launch_file):
    """A node that exits (e.g. cannot start) shuts the whole launch down, with its [FATAL] line as reason."""
    from vla_adapter_ros.launch_args import NodeExited

    _, actions = _actions(REPO / "launch" / launch_file)
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    handlers = [a.args[0] for a in actions if type(a).__name__ == "RegisterEventHandler"]
    for node in nodes:
        name = f"{node.kwargs.get('namespace', '')}/{node.kwargs['name']}".lstrip("/")  # e.g. robot1/sim_node
        on_exit = [h for h in handlers if type(h).__name__ == "OnProcessExit" and h.kwargs["target_action"] is node]
        on_io = [h for h in handlers if type(h).__name__ == "OnProcessIO" and h.kwargs["target_action"] is node]
        assert len(on_exit) == 1 and len(on_io) == 1, name
        event = types.SimpleNamespace(text=f"[FATAL] {name}: cannot start: ValueError: boom\n".encode(), returncode=1)
        on_io[0].kwargs["on_stderr"](event)
        reason = f"{name} exited with code 1: {name}: cannot start: ValueError: boom"
        (fail,) = on_exit[0].kwargs["on_exit"](event, types.SimpleNamespace(is_shutdown=False))
        # an exception in an action: launch logs its text in one line, stops the rest and exits with code 1
        assert type(fail).__name__ == "OpaqueFunction"
        with pytest.raises(NodeExited) as info:
            fail.kwargs["function"](None)
        assert str(info.value) == f"shutting down: {reason}"
        clean = types.SimpleNamespace(text=b"", returncode=0)  # a node that ends cleanly ends the launch cleanly
        (shutdown,) = on_exit[0].kwargs["on_exit"](clean, types.SimpleNamespace(is_shutdown=False))
        assert type(shutdown).__name__ == "Shutdown"
        assert shutdown.kwargs["reason"].startswith(f"{name} exited with code 0")
        # while the launch is already stopping (Ctrl-C), an exit adds nothing
        assert on_exit[0].kwargs["on_exit"](event, types.SimpleNamespace(is_shutdown=True)) is None


def test_sim_launch_instruction_argument(launch_api):
    _, nodes = _evaluate(REPO / "launch" / "sim.launch.py", task="push_blue_left")
    assert _merged(nodes["policy_node"]["parameters"])["instruction"] == "push the blue cube to the left"
    _, nodes = _evaluate(REPO / "launch" / "sim.launch.py", instruction="reach the red cube slowly")
    assert _merged(nodes["policy_node"]["parameters"])["instruction"] == "reach the red cube slowly"


def _all_nodes(path: Path, **overrides):
    _, actions = _actions(path, **overrides)
    return [a.kwargs for a in actions if type(a).__name__ == "Node"]


def test_namespaced_parameter_file(tmp_path):
    from vla_adapter_ros.supervisor import namespaced_parameter_file

    source = tmp_path / "p.yaml"
    source.write_text("sim_node:\n  ros__parameters:\n    seed: 3\n/**:\n  ros__parameters:\n    use_sim_time: true\n"
                      "/**/policy_node:\n  ros__parameters:\n    device: cpu\n")
    assert namespaced_parameter_file(source, "", tmp_path / "s") == source  # no namespace: the file itself
    copy = namespaced_parameter_file(source, "/robot1", tmp_path / "s")
    assert copy.parent == tmp_path / "s" and copy.name == "00_p.yaml"
    assert yaml.safe_load(copy.read_text()) == {"/robot1/sim_node": {"ros__parameters": {"seed": 3}},
                                                "/**": {"ros__parameters": {"use_sim_time": True}},
                                                "/**/policy_node": {"ros__parameters": {"device": "cpu"}}}
    assert namespaced_parameter_file(source, "/robot1", tmp_path / "s").name == "01_p.yaml"  # never overwritten
    broken = tmp_path / "broken.yaml"
    broken.write_text("sim_node: [unclosed")
    assert namespaced_parameter_file(broken, "/robot1", tmp_path / "s") == broken  # the node will say what is wrong


def test_namespace_moves_a_whole_stack(launch_api):
    """namespace:=robot1 puts every node under /robot1; their topic names are all relative, so topics,
    services and actions move with it; a namespaced simulation has its own clock (/robot1/clock)."""
    from vla_adapter_ros.nodes import executor_node, policy_node, recorder_node, sim_node

    for module in (executor_node, policy_node, sim_node, recorder_node):
        for key, value in module.DEFAULTS.items():
            if key.endswith(("_topic", "_topics", "_ns")):
                names = value if isinstance(value, list) else [value]
                assert not any(str(n).startswith("/") for n in names), (module.__name__, key, value)
    for name in ("policy.yaml", "executor.yaml", "sim.yaml", "policy_sim.yaml", "executor_sim.yaml",
                 "platforms/gazebo.yaml", "platforms/isaac.yaml", "recorder.yaml", "recorder_real.yaml"):
        for node, section in yaml.safe_load((REPO / "config" / name).read_text()).items():
            for key, value in section["ros__parameters"].items():
                if key.endswith(("_topic", "_topics", "_ns")) or key == "topics":
                    names = value if isinstance(value, list) else [value]
                    assert not any(str(n).startswith("/") for n in names), (name, key, value)

    nodes = _all_nodes(REPO / "launch" / "franka.launch.py", namespace="robot1")
    assert [(n["name"], n["namespace"]) for n in nodes] == [("policy_node", "/robot1"), ("executor_node", "/robot1")]
    assert all("remappings" not in n for n in nodes)  # a real robot or Gazebo: the one global /clock
    nodes = _all_nodes(REPO / "launch" / "sim.launch.py", namespace="/lab/robot1/")
    assert {n["namespace"] for n in nodes} == {"/lab/robot1"} and len(nodes) == 3
    sim = yaml.safe_load(Path(nodes[0]["parameters"][0]).read_text())
    assert list(sim) == ["/lab/robot1/sim_node"]  # ROS matches `sim_node:` only to /sim_node
    assert all(n["remappings"] == [("/clock", "clock")] for n in nodes)
    assert all("namespace" not in n and "remappings" not in n for n in _all_nodes(REPO / "launch" / "sim.launch.py"))
    from vla_adapter_ros.launch_args import LaunchArgumentError

    for bad in ("1robot", "robot 1", "robot-1", "//x"):
        with pytest.raises(LaunchArgumentError, match="namespace must be like robot1"):
            _all_nodes(REPO / "launch" / "sim.launch.py", namespace=bad)


def test_sim_pair_launch_runs_two_namespaced_stacks(launch_api):
    nodes = _all_nodes(REPO / "launch" / "sim_pair.launch.py", task1="push_blue_left", task2="lift_green", seed="7")
    assert sorted((n["namespace"], n["name"]) for n in nodes) == sorted(
        (ns, name) for ns in ("/robot1", "/robot2") for name in ("sim_node", "policy_node", "executor_node"))
    assert all(n["remappings"] == [("/clock", "clock")] for n in nodes)
    by = {(n["namespace"], n["name"]): n for n in nodes}
    for namespace, task, seed in (("/robot1", "push_blue_left", 7), ("/robot2", "lift_green", 8)):
        assert _merged(by[namespace, "sim_node"]["parameters"]) == {  # frames on the shared /tf: robot1/base, ...
            "task": task, "seed": seed, "camera_rate_hz": 10.0, "tf_prefix": namespace[1:] + "/"}
    assert _merged(by["/robot1", "policy_node"]["parameters"])["instruction"] == "push the blue cube to the left"
    assert _merged(by["/robot2", "policy_node"]["parameters"])["instruction"] == "lift the green cube"
    sim = {s.name: s for s in __import__("vla_adapter_ros.supervisor", fromlist=["load_stack"]).load_stack(
        REPO / "config" / "sim_stack.yaml")}
    for (namespace, name), node in by.items():  # the stack's files, their sections renamed into the namespace
        files = [p for p in node["parameters"] if isinstance(p, str)]
        assert [Path(p).name.split("_", 1)[1] for p in files] == [p.name for p in sim[name].params]
        for copy, original in zip(files, sim[name].params):
            data, source = yaml.safe_load(Path(copy).read_text()), yaml.safe_load(original.read_text())
            assert data == {f"{namespace}/{key}": body for key, body in source.items()}


def test_launch_files_with_the_real_launch_api(monkeypatch):
    """With the real launch / launch_ros (not on PyPI: skipped in CI): the files build real actions."""
    pytest.importorskip("launch.actions")  # (a bare "launch" would find this repository's launch/ folder)
    pytest.importorskip("launch_ros.actions")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
    from launch_ros.actions import Node

    ament = pytest.importorskip("ament_index_python.packages")
    monkeypatch.setattr(ament, "get_package_share_directory", lambda package: str(REPO))
    monkeypatch.setattr("vla_adapter_ros.launch_args.franka_msgs_available", lambda: True)
    for launch_file in ("sim.launch.py", "franka.launch.py", "libero.launch.py", "sim_pair.launch.py"):
        path = REPO / "launch" / launch_file
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        context = LaunchContext()
        for entity in description.entities:
            if isinstance(entity, DeclareLaunchArgument):
                context.launch_configurations[entity.name] = entity.default_value[0].perform(context)
        (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
        actions = opaque.execute(context)
        nodes = sum(isinstance(a, Node) for a in actions)
        assert nodes and sum(isinstance(a, RegisterEventHandler) for a in actions) == 2 * nodes, launch_file
