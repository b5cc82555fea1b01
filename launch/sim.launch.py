"""The built-in MuJoCo simulation with the same policy + executor stack:

    ros2 launch vla_adapter_ros sim.launch.py task:=lift_green checkpoint:=/path/to/ckpt

Starts the node set of config/sim_stack.yaml with the same parameter files (what
`vla-adapter-ros up config/sim_stack.yaml` starts without ros2 launch). The policy's instruction is
the task's (vla_adapter_ros/sim/tasks.py) unless `instruction:=...` says otherwise. `namespace:=robot1`
moves the whole stack (topics, services, actions and its simulated clock) under /robot1; two stacks side
by side: launch/sim_pair.launch.py. Arguments are
checked before any node starts (vla_adapter_ros/launch_args.py); every node is required: when one
exits, the launch shuts down with its reason.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from vla_adapter_ros.launch_args import SIM_ARGUMENTS, launch_nodes, sim_stack, validate
from vla_adapter_ros.supervisor import middleware_environment  # the large-data Fast DDS profile

ARGUMENTS = SIM_ARGUMENTS  # name, default, description, choices: vla_adapter_ros/launch_args.py


def launch_setup(context, *args, **kwargs):
    arg = validate(ARGUMENTS, {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS})
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    return launch_nodes(sim_stack(arg, config, namespace=arg["namespace"]), output="screen",
                        additional_env=middleware_environment())


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": a.launch_choices()} if a.choices else {}))
                for a in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
