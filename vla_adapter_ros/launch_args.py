"""Validation of the launch files' arguments, and the simulation stack's node set (pure Python:
importable and testable without `launch`).

ros2 launch passes every argument as a string and the launch files used to read anything but
"true" as false (`dry_run:=ture` meant: move the robot) and to pass unknown choices on to a node
that then died while the rest of the launch kept running. `validate` turns the strings into typed
values or raises LaunchArgumentError naming every bad argument; the launch files call it before they
start any node, and declare the choices on their DeclareLaunchArgument too.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional


class LaunchArgumentError(ValueError):
    """One or more launch arguments that the launch refuses (the message names each one)."""


@dataclass(frozen=True)
class Argument:
    """A launch argument: kind str | bool | int | float | device | namespace; choices (str); optional: ''
    allowed (meaning 'keep the configured value')."""

    name: str
    default: str
    description: str
    kind: str = "str"
    choices: Optional[tuple] = None
    optional: bool = False
    minimum: Optional[float] = None

    def launch_choices(self) -> Optional[list[str]]:
        """The choices for DeclareLaunchArgument (None: free text, checked by `validate`)."""
        if self.choices is None:
            return None
        return ([""] if self.optional else []) + list(self.choices)


DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
NAMESPACE = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*/?$")


def check_namespace(value: str) -> str:
    """'' (the root namespace) or a ROS namespace, returned absolute: 'robot1' -> '/robot1'."""
    if value in ("", "/"):
        return ""
    if not NAMESPACE.match(value):
        raise ValueError(f"namespace must be like robot1 or /lab/robot1 (letters, digits, _; a token may not "
                         f"start with a digit), got {value!r}")
    return "/" + value.strip("/")


def check_device(value: str) -> str:
    if not DEVICE.match(value):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value


def parse_bool(name: str, value: str) -> bool:
    """'true' / 'false' in any case; anything else (yes, 1, ture, perhaps) is an error naming `name`."""
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise LaunchArgumentError(f"launch argument {name}: expected true or false, got {value!r}")


def _parse(arg: Argument, value: str) -> Any:
    value = str(value).strip()
    if arg.optional and value == "":
        return None
    if arg.kind == "bool":
        return parse_bool(arg.name, value)
    if arg.choices is not None and value not in arg.choices:
        raise LaunchArgumentError(f"launch argument {arg.name}: {value!r} is not one of "
                                  f"{', '.join(arg.launch_choices())}")
    if arg.kind == "device":
        try:
            return check_device(value)
        except ValueError as exc:
            raise LaunchArgumentError(f"launch argument {arg.name}: {exc}") from None
    if arg.kind == "namespace":
        try:
            return check_namespace(value)
        except ValueError as exc:
            raise LaunchArgumentError(f"launch argument {arg.name}: {exc}") from None
    if arg.kind in ("int", "float"):
        try:
            number = int(value) if arg.kind == "int" else float(value)
        except ValueError:
            expected = "an integer" if arg.kind == "int" else "a number"
            raise LaunchArgumentError(f"launch argument {arg.name}: expected {expected}, got {value!r}") from None
        if arg.minimum is not None and not number >= arg.minimum:
            raise LaunchArgumentError(f"launch argument {arg.name}: must be >= {arg.minimum:g}, got {value!r}")
        return number
    return value


def validate(arguments: Mapping[str, Argument] | list[Argument], values: Mapping[str, str]) -> dict[str, Any]:
    """{name: typed value} (None for an empty optional argument); LaunchArgumentError listing every
    argument that is not acceptable."""
    spec = {a.name: a for a in arguments} if isinstance(arguments, list) else dict(arguments)
    typed, problems = {}, []
    for name, arg in spec.items():
        try:
            typed[name] = _parse(arg, values.get(name, arg.default))
        except LaunchArgumentError as exc:
            problems.append(str(exc))
    if problems:
        raise LaunchArgumentError("; ".join(problems))
    return typed


# ------------------------------------------------------------------------------------ the launch files
CONTROLLERS = ("jtc", "forward", "sim")  # executor outputs a franka.launch.py user picks (eef_delta: LIBERO)
GRIPPER_OUTPUTS = ("none", "topic", "franka", "auto")  # executor_node GRIPPER_OUTPUTS
PLATFORMS = ("real", "mujoco", "gazebo", "isaac")  # vla_adapter_ros.platforms.PLATFORMS
SIM_TASKS = ("reach_red", "push_blue_left", "lift_green")  # vla_adapter_ros.sim.tasks.TASKS

FRANKA_ARGUMENTS = [
    Argument("platform", "real", "real (franka_ros2) | mujoco (a running sim_node) | gazebo | isaac",
             choices=PLATFORMS),
    Argument("checkpoint", "", "checkpoint directory (empty: random weights, for plumbing tests only)"),
    Argument("device", "auto", "auto | cpu | cuda | cuda:N", kind="device"),
    Argument("robot_type", "", "fr3 | panda | path to a limits file; renames the joints (empty: the platform's)"),
    Argument("controller", "", "jtc (JointTrajectoryController) | forward (forward position controller) | "
                               "sim (sensor_msgs/JointState, e.g. Isaac /joint_command); empty: the platform's",
             choices=CONTROLLERS, optional=True),
    Argument("jtc_topic", "", "JointTrajectory command topic, controller jtc (empty: the platform's)"),
    Argument("forward_topic", "", "Float64MultiArray command topic, controller forward (empty: the platform's)"),
    Argument("sim_topic", "", "JointState command topic, controller sim (empty: the platform's)"),
    Argument("agentview_topic", "", "third-person camera, sensor_msgs/Image (empty: the platform's)"),
    Argument("wrist_topic", "", "wrist camera, sensor_msgs/Image (empty: the platform's)"),
    Argument("joint_state_topic", "", "sensor_msgs/JointState with arm and finger joints (empty: the platform's)"),
    Argument("eef_pose_topic", "", "geometry_msgs/PoseStamped of the hand TCP (empty: the platform's; real: "
                                   "forward kinematics)"),
    Argument("gripper_output", "", "none | topic | franka (needs franka_ros2) | auto (franka if franka_msgs is "
                                   "installed, else none with a warning); empty: the platform's (real: franka)",
             choices=GRIPPER_OUTPUTS, optional=True),
    Argument("use_sim_time", "", "true | false: follow /clock (empty: the platform's; true for the simulators)",
             kind="bool", optional=True),
    Argument("dry_run", "false", "true | false: compute and publish commands on a debug topic only; actuate nothing",
             kind="bool"),
    Argument("auto_enable", "false", "true | false: enable the executor at start (never on a real robot unless "
                                     "you mean it)", kind="bool"),
    Argument("namespace", "", "ROS namespace of the stack (e.g. robot1): its topics, services and actions move "
                              "under it (empty: the root namespace)", kind="namespace"),
    Argument("policy_params", "", "extra parameter file for policy_node (checkpoint-specific I/O, e.g. action_scale)"),
    Argument("executor_params", "", "extra parameter file for executor_node"),
]

SIM_ARGUMENTS = [
    Argument("task", "reach_red", "reach_red | push_blue_left | lift_green (also sets the policy's instruction)",
             choices=SIM_TASKS),
    Argument("seed", "0", "placement seed of the first episode", kind="int", minimum=0),
    Argument("checkpoint", "", "checkpoint directory (empty: random weights)"),
    Argument("device", "auto", "auto | cpu | cuda | cuda:N", kind="device"),
    Argument("camera_rate_hz", "10.0", "simulated camera rate (Hz)", kind="float", minimum=0.1),
    Argument("instruction", "", "the policy's instruction (empty: the task's)"),
    Argument("namespace", "", "ROS namespace of the stack (e.g. robot1): its topics, services, actions and its "
                              "simulated clock (<namespace>/clock) move under it (empty: the root namespace)",
             kind="namespace"),
]

# two simulation stacks side by side (launch/sim_pair.launch.py): one per namespace, each with its own sim
SIM_PAIR_ARGUMENTS = [
    Argument("task1", "reach_red", "task of the first robot (namespace robot1)", choices=SIM_TASKS),
    Argument("task2", "lift_green", "task of the second robot (namespace robot2)", choices=SIM_TASKS),
    Argument("seed", "0", "placement seed of the first episode (robot2 gets seed + 1)", kind="int", minimum=0),
    Argument("checkpoint", "", "checkpoint directory for both policies (empty: random weights)"),
    Argument("device", "auto", "auto | cpu | cuda | cuda:N", kind="device"),
    Argument("camera_rate_hz", "10.0", "simulated camera rate (Hz)", kind="float", minimum=0.1),
]
PAIR_NAMESPACES = ("/robot1", "/robot2")

LIBERO_ARGUMENTS = [
    Argument("task", "libero_spatial/0", "SUITE/INDEX of the first episode"),
    Argument("init_state", "0", "initial-state number of the first episode", kind="int", minimum=0),
    Argument("max_steps", "0", "policy steps per episode (0: the suite's official limit)", kind="int", minimum=0),
    Argument("checkpoint", "", "checkpoint directory (empty: random weights)"),
    Argument("device", "auto", "auto | cpu | cuda | cuda:N", kind="device"),
    Argument("libero_python", "", "interpreter for libero_node (empty: the installed executable's python3)"),
]


def sim_instruction(task: str) -> str:
    """The instruction of a built-in simulation task (vla_adapter_ros/sim/tasks.py)."""
    from vla_adapter_ros.sim.tasks import get_task

    return get_task(task).instruction


@dataclass(frozen=True)
class NodeSpec:
    """One node of a launch: executable (= node name), parameter files and dicts in order, namespace
    ('' for the root) and remappings."""

    name: str
    parameters: list
    namespace: str = ""
    remappings: tuple = ()

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}".lstrip("/")

    def node_kwargs(self) -> dict:
        """launch_ros Node keyword arguments (namespace and remappings only when there are any)."""
        kwargs = {"package": "vla_adapter_ros", "executable": self.name, "name": self.name,
                  "parameters": self.parameters}
        if self.namespace:
            kwargs["namespace"] = self.namespace
        if self.remappings:
            kwargs["remappings"] = list(self.remappings)
        return kwargs


def sim_stack(arg: Mapping[str, Any], config_dir: str, namespace: str = "") -> list[NodeSpec]:
    """sim_node + policy_node + executor_node of config/sim_stack.yaml for validated SIM_ARGUMENTS values.
    In a namespace every topic name is relative, the stack's simulated clock is <namespace>/clock
    (remapped for all three nodes), so two stacks run side by side without sharing /clock, and the sim's
    frames on the shared /tf are prefixed with the namespace (see supervisor.namespace_parameters)."""
    import os

    from vla_adapter_ros.supervisor import namespace_parameters

    instruction = arg.get("instruction") or sim_instruction(arg["task"])
    remappings = (("/clock", "clock"),) if namespace else ()
    files = {name: [os.path.join(config_dir, f) for f in names] for name, names in {
        "sim_node": ["sim.yaml"], "policy_node": ["policy.yaml", "policy_sim.yaml"],
        "executor_node": ["executor.yaml", "executor_sim.yaml"]}.items()}
    overrides = {
        "sim_node": {"task": arg["task"], "seed": arg["seed"], "camera_rate_hz": arg["camera_rate_hz"],
                     **namespace_parameters("sim_node", namespace)},
        "policy_node": {"checkpoint": arg["checkpoint"], "device": arg["device"], "instruction": instruction},
        "executor_node": {},
    }
    return [NodeSpec(name, files[name] + ([overrides[name]] if overrides[name] else []), namespace, remappings)
            for name in ("sim_node", "policy_node", "executor_node")]


def franka_msgs_available() -> bool:
    try:
        return importlib.util.find_spec("franka_msgs") is not None
    except (ImportError, ValueError):
        return False


def check_gripper_output(gripper_output: str, available: Optional[bool] = None) -> None:
    """gripper_output 'franka' without franka_msgs: the executor would refuse to start, so the launch
    refuses first, with the way out (the default real platform uses franka)."""
    if gripper_output != "franka":
        return
    if available is None:
        available = franka_msgs_available()
    if not available:
        raise LaunchArgumentError(
            "gripper_output 'franka' (the real platform's default) needs franka_msgs, which is not installed: "
            "install franka_ros2, or pass gripper_output:=none (no gripper), gripper_output:=topic or "
            "gripper_output:=auto (franka when available, else none with a warning)")


def exit_reason(name: str, returncode: Optional[int], last_fatal: str = "") -> str:
    """Why the launch shuts down when one of its (required) nodes exits."""
    text = f"{name} exited with code {returncode}"
    return f"{text}: {last_fatal}" if last_fatal else text


_FATAL = re.compile(r"\[FATAL\]\s*(?:\[[0-9.]+\]\s*\[[^\]]*\]:\s*)?(?P<message>.*\S)")


def fatal_line(text: str) -> str:
    """The message of the last `[FATAL] ...` line in a node's output ('' when there is none)."""
    found = ""
    for line in str(text).splitlines():
        match = _FATAL.search(line)
        if match:
            found = match.group("message")
    return found


def launch_nodes(specs: list[NodeSpec], **node_kwargs) -> list:
    """launch_ros Nodes for `specs`, each required (see `required`). A namespaced node gets copies of its
    parameter files whose sections name it in its namespace (supervisor.namespaced_parameter_file), in a
    directory removed when the launch exits. Imports launch_ros: call from launch files."""
    import atexit
    import shutil
    import tempfile

    from launch_ros.actions import Node

    from vla_adapter_ros.supervisor import namespaced_parameter_file

    scratch = None
    actions = []
    for spec in specs:
        if spec.namespace:
            if scratch is None:
                scratch = tempfile.mkdtemp(prefix="vla_adapter_ros_params_")
                atexit.register(shutil.rmtree, scratch, True)
            spec = NodeSpec(spec.name, [namespaced_parameter_file(p, spec.namespace, scratch).as_posix()
                                        if isinstance(p, str) else p for p in spec.parameters],
                            spec.namespace, spec.remappings)
        actions += required(Node(**spec.node_kwargs(), **node_kwargs), spec.label)
    return actions


class NodeExited(RuntimeError):
    """A required node exited with an error: raised inside the launch, which logs the reason in one line,
    stops the other nodes and makes `ros2 launch` exit with code 1."""


def required(node, name: str) -> list:
    """`node` (a launch_ros Node) plus what makes it required: when it exits, the whole launch shuts
    down with the node's one-line reason (its [FATAL] line), and with exit code 1 when the node failed
    (a launch `Shutdown` alone ends `ros2 launch` with 0). Imports launch: call from launch files."""
    from launch.actions import OpaqueFunction, RegisterEventHandler, Shutdown
    from launch.event_handlers import OnProcessExit, OnProcessIO

    last = {"fatal": ""}

    def on_output(event):
        line = fatal_line(event.text.decode(errors="replace") if isinstance(event.text, bytes) else event.text)
        if line:
            last["fatal"] = line

    def on_exit(event, context):
        if getattr(context, "is_shutdown", False):
            return None  # already stopping (Ctrl-C): a node's exit is expected, nothing to add
        reason = exit_reason(name, event.returncode, last["fatal"])
        if not event.returncode:
            return [Shutdown(reason=reason)]

        def fail(_context):  # launch logs "Caught exception in launch ...: <reason>", shuts down, returns 1
            raise NodeExited(f"shutting down: {reason}")

        return [OpaqueFunction(function=fail)]

    return [
        node,
        RegisterEventHandler(OnProcessIO(target_action=node, on_stderr=on_output, on_stdout=on_output)),
        RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_exit)),
    ]
