"""policy_node + executor_node for a Franka FR3 / Panda: the real robot, or a simulator by one argument.

    ros2 launch vla_adapter_ros franka.launch.py checkpoint:=/path/to/ckpt               # real robot
    ros2 launch vla_adapter_ros franka.launch.py platform:=gazebo checkpoint:=/path/to/ckpt
    ros2 launch vla_adapter_ros franka.launch.py platform:=isaac checkpoint:=/path/to/ckpt

platform (real | mujoco | gazebo | isaac) adds its parameter file after config/policy.yaml and
config/executor.yaml (see vla_adapter_ros/platforms.py and config/platforms/). Arguments left empty
keep the platform's values; arguments that are given override them.

The executor starts DISABLED on every platform: nothing moves until
    ros2 service call /executor_node/enable std_srvs/srv/SetBool "{data: true}"
Use dry_run:=true to see the commands on /executor_node/dry_run/joint_trajectory without moving.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vla_adapter_ros.platforms import resolve_platform

ARGUMENTS = [
    ("platform", "real", "real (franka_ros2) | mujoco (a running sim_node) | gazebo | isaac"),
    ("checkpoint", "", "checkpoint directory (empty: random weights, for plumbing tests only)"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("robot_type", "", "fr3 | panda | path to a limits file; renames the joints (empty: the platform's)"),
    ("controller", "", "jtc (JointTrajectoryController) | forward (forward position controller) | "
                       "sim (sensor_msgs/JointState, e.g. Isaac /joint_command); empty: the platform's"),
    ("jtc_topic", "", "JointTrajectory command topic, controller jtc (empty: the platform's)"),
    ("forward_topic", "", "Float64MultiArray command topic, controller forward (empty: the platform's)"),
    ("sim_topic", "", "JointState command topic, controller sim (empty: the platform's)"),
    ("agentview_topic", "", "third-person camera, sensor_msgs/Image (empty: the platform's)"),
    ("wrist_topic", "", "wrist camera, sensor_msgs/Image (empty: the platform's)"),
    ("joint_state_topic", "", "sensor_msgs/JointState with arm and finger joints (empty: the platform's)"),
    ("eef_pose_topic", "", "geometry_msgs/PoseStamped of the hand TCP (empty: the platform's; real: "
                           "forward kinematics)"),
    ("gripper_output", "", "none | topic | franka (empty: the platform's; real: franka)"),
    ("use_sim_time", "", "follow /clock (empty: the platform's; true for the simulators)"),
    ("dry_run", "false", "compute and publish commands on a debug topic only; actuate nothing"),
    ("auto_enable", "false", "enable the executor at start (never on a real robot unless you mean it)"),
    ("policy_params", "", "extra parameter file for policy_node (checkpoint-specific I/O, e.g. action_scale)"),
    ("executor_params", "", "extra parameter file for executor_node"),
]

# launch argument -> the (node, parameter) pairs it sets when given
OVERRIDE_ARGUMENTS = {
    "controller": [("executor_node", "output")],
    "jtc_topic": [("executor_node", "jtc_topic")],
    "forward_topic": [("executor_node", "forward_topic")],
    "sim_topic": [("executor_node", "sim_topic")],
    "joint_state_topic": [("policy_node", "joint_state_topic"), ("executor_node", "joint_state_topic")],
    "eef_pose_topic": [("policy_node", "eef_pose_topic")],
    "gripper_output": [("executor_node", "gripper_output")],
}


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    overrides = {
        "policy_node": {"checkpoint": arg["checkpoint"], "device": arg["device"]},
        "executor_node": {"dry_run": _bool(arg["dry_run"]), "auto_enable": _bool(arg["auto_enable"])},
    }
    for name, targets in OVERRIDE_ARGUMENTS.items():
        if arg[name]:
            for node, key in targets:
                overrides[node][key] = arg[name]
    if arg["use_sim_time"]:
        for node in overrides:
            overrides[node]["use_sim_time"] = _bool(arg["use_sim_time"])
    if arg["agentview_topic"] or arg["wrist_topic"]:
        cameras = resolve_platform(arg["platform"], config_dir=config)["policy_node"].params["camera_topics"]
        overrides["policy_node"]["camera_topics"] = [arg["agentview_topic"] or cameras[0],
                                                     arg["wrist_topic"] or cameras[1]]
    # Checks names, keys, types and joint names here: a mistake fails the launch, not a node later.
    resolved = resolve_platform(arg["platform"], robot=arg["robot_type"] or None, overrides=overrides,
                                config_dir=config)
    nodes = []
    for name in ("policy_node", "executor_node"):
        params = [*(str(path) for path in resolved[name].files), resolved[name].overrides]
        extra = arg["policy_params" if name == "policy_node" else "executor_params"]
        if extra:
            params.append(extra)  # last: wins over everything above
        nodes.append(Node(package="vla_adapter_ros", executable=name, name=name,
                          parameters=params, output="screen", emulate_tty=True))
    return nodes


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
