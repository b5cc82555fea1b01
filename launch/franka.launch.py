"""Real robot: policy_node + executor_node for a Franka FR3 / Panda.

    ros2 launch vla_adapter_ros franka.launch.py checkpoint:=/path/to/ckpt

The executor starts DISABLED: nothing moves until
    ros2 service call /executor_node/enable std_srvs/srv/SetBool "{data: true}"
Use dry_run:=true to see the commands on /executor_node/dry_run/joint_trajectory without moving.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = [
    ("checkpoint", "", "checkpoint directory (empty: random weights, for plumbing tests only)"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("robot_type", "fr3", "fr3 | panda (limits from config/robots/<robot_type>.yaml)"),
    ("controller", "jtc", "jtc (JointTrajectoryController) | forward (forward position controller) | sim"),
    ("jtc_topic", "/fr3_arm_controller/joint_trajectory", "JointTrajectory command topic (controller jtc)"),
    ("forward_topic", "/forward_position_controller/commands", "Float64MultiArray topic (controller forward)"),
    ("sim_topic", "/joint_command", "JointState command topic (controller sim)"),
    ("agentview_topic", "/camera/agentview/image_raw", "third-person camera (sensor_msgs/Image)"),
    ("wrist_topic", "/camera/wrist/image_raw", "wrist camera (sensor_msgs/Image)"),
    ("joint_state_topic", "/joint_states", "sensor_msgs/JointState with arm and finger joints"),
    ("eef_pose_topic", "", "geometry_msgs/PoseStamped of the hand TCP (empty: forward kinematics)"),
    ("gripper_output", "franka", "none | topic | franka (franka_gripper Move/Grasp actions)"),
    ("use_sim_time", "false", "follow /clock"),
    ("dry_run", "false", "compute and publish commands on a debug topic only; actuate nothing"),
    ("auto_enable", "false", "enable the executor at start (never on a real robot unless you mean it)"),
    ("policy_params", "", "extra parameter file for policy_node (checkpoint-specific I/O, e.g. action_scale)"),
    ("executor_params", "", "extra parameter file for executor_node"),
]


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    robot = arg["robot_type"]
    prefix = "fr3_" if robot == "fr3" else "panda_"
    use_sim_time = _bool(arg["use_sim_time"])

    policy_params = [
        os.path.join(config, "policy.yaml"),
        {
            "checkpoint": arg["checkpoint"],
            "device": arg["device"],
            "camera_topics": [arg["agentview_topic"], arg["wrist_topic"]],
            "joint_state_topic": arg["joint_state_topic"],
            "arm_joint_names": [f"{prefix}joint{i}" for i in range(1, 8)],
            "finger_joint_names": [f"{prefix}finger_joint1", f"{prefix}finger_joint2"],
            "eef_pose_topic": arg["eef_pose_topic"],
            "use_sim_time": use_sim_time,
        },
    ]
    executor_params = [
        os.path.join(config, "executor.yaml"),
        {
            "robot": robot,
            "output": arg["controller"],
            "jtc_topic": arg["jtc_topic"],
            "forward_topic": arg["forward_topic"],
            "sim_topic": arg["sim_topic"],
            "joint_state_topic": arg["joint_state_topic"],
            "gripper_output": arg["gripper_output"],
            "dry_run": _bool(arg["dry_run"]),
            "auto_enable": _bool(arg["auto_enable"]),
            "use_sim_time": use_sim_time,
        },
    ]
    if arg["policy_params"]:
        policy_params.append(arg["policy_params"])
    if arg["executor_params"]:
        executor_params.append(arg["executor_params"])
    return [
        Node(package="vla_adapter_ros", executable="policy_node", name="policy_node",
             parameters=policy_params, output="screen", emulate_tty=True),
        Node(package="vla_adapter_ros", executable="executor_node", name="executor_node",
             parameters=executor_params, output="screen", emulate_tty=True),
    ]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
