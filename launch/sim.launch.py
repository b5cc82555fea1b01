"""The built-in MuJoCo simulation with the same policy + executor stack:

    ros2 launch vla_adapter_ros sim.launch.py task:=lift_green checkpoint:=/path/to/ckpt

Starts the node set of config/sim_stack.yaml with the same parameter files (what
`vla-adapter-ros up config/sim_stack.yaml` starts without ros2 launch).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = [
    ("task", "reach_red", "reach_red | push_blue_left | lift_green"),
    ("seed", "0", "placement seed of the first episode"),
    ("checkpoint", "", "checkpoint directory (empty: random weights)"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("camera_rate_hz", "10.0", "simulated camera rate"),
]


def launch_setup(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    return [
        Node(package="vla_adapter_ros", executable="sim_node", name="sim_node", output="screen",
             parameters=[os.path.join(config, "sim.yaml"),
                         {"task": arg["task"], "seed": int(arg["seed"]),
                          "camera_rate_hz": float(arg["camera_rate_hz"])}]),
        Node(package="vla_adapter_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[os.path.join(config, "policy.yaml"), os.path.join(config, "policy_sim.yaml"),
                         {"checkpoint": arg["checkpoint"], "device": arg["device"]}]),
        Node(package="vla_adapter_ros", executable="executor_node", name="executor_node", output="screen",
             parameters=[os.path.join(config, "executor.yaml"), os.path.join(config, "executor_sim.yaml")]),
    ]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
