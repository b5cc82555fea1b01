"""Two robots side by side: two built-in MuJoCo simulation stacks in one launch, one per namespace.

    ros2 launch vla_adapter_ros sim_pair.launch.py task1:=reach_red task2:=lift_green

/robot1 and /robot2 each get a sim_node, policy_node and executor_node with the parameter files of
sim.launch.py. Every topic name is relative, so each stack's topics, services and actions live under
its namespace (/robot1/joint_states, /robot1/executor_node/enable, ...), and each simulation keeps
its own clock (/robot1/clock, /robot2/clock). Every node is required: when one exits, the launch
shuts down with its reason.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from vla_adapter_ros.launch_args import PAIR_NAMESPACES, SIM_PAIR_ARGUMENTS, launch_nodes, sim_stack, validate
from vla_adapter_ros.supervisor import middleware_environment  # the large-data Fast DDS profile

ARGUMENTS = SIM_PAIR_ARGUMENTS  # name, default, description, choices: vla_adapter_ros/launch_args.py


def launch_setup(context, *args, **kwargs):
    arg = validate(ARGUMENTS, {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS})
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    specs = []
    for index, namespace in enumerate(PAIR_NAMESPACES):
        stack = {**arg, "task": arg[f"task{index + 1}"], "seed": arg["seed"] + index, "instruction": ""}
        specs += sim_stack(stack, config, namespace=namespace)
    return launch_nodes(specs, output="screen", additional_env=middleware_environment())


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": a.launch_choices()} if a.choices else {}))
                for a in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
