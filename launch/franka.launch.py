"""policy_node + executor_node for a Franka FR3 / Panda: the real robot, or a simulator by one argument.

    ros2 launch vla_adapter_ros franka.launch.py checkpoint:=/path/to/ckpt               # real robot
    ros2 launch vla_adapter_ros franka.launch.py platform:=gazebo checkpoint:=/path/to/ckpt
    ros2 launch vla_adapter_ros franka.launch.py platform:=isaac checkpoint:=/path/to/ckpt

platform (real | mujoco | gazebo | isaac) adds its parameter file after config/policy.yaml and
config/executor.yaml (see vla_adapter_ros/platforms.py and config/platforms/). Arguments left empty
keep the platform's values; arguments that are given override them.

The executor starts DISABLED on every platform: nothing moves until
    ros2 service call /executor_node/enable std_srvs/srv/SetBool "{data: true}"
(with namespace:=robot1: /robot1/executor_node/enable; every topic moves under /robot1 too).
Use dry_run:=true to see the commands on /executor_node/dry_run/joint_trajectory without moving.

Arguments are checked before any node starts (vla_adapter_ros/launch_args.py): booleans are true or
false, choices are enforced, and gripper_output franka (the real platform's) needs franka_msgs
(franka_ros2); gripper_output:=auto falls back to none with a warning. Both nodes are required: when
one exits, the launch shuts down with its reason.
"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from vla_adapter_ros.launch_args import FRANKA_ARGUMENTS, NodeSpec, check_gripper_output, launch_nodes, validate
from vla_adapter_ros.platforms import node_section, resolve_platform
from vla_adapter_ros.supervisor import middleware_environment  # the large-data Fast DDS profile

ARGUMENTS = FRANKA_ARGUMENTS  # name, default, description, choices: vla_adapter_ros/launch_args.py

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


def launch_setup(context, *args, **kwargs):
    # strict: dry_run:=ture or controller:=bogus stop the launch here, before any node starts
    arg = validate(ARGUMENTS, {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS})
    config = os.path.join(get_package_share_directory("vla_adapter_ros"), "config")
    overrides = {
        "policy_node": {"checkpoint": arg["checkpoint"], "device": arg["device"]},
        "executor_node": {"dry_run": arg["dry_run"], "auto_enable": arg["auto_enable"]},
    }
    for name, targets in OVERRIDE_ARGUMENTS.items():
        if arg[name]:
            for node, key in targets:
                overrides[node][key] = arg[name]
    if arg["use_sim_time"] is not None:
        for node in overrides:
            overrides[node]["use_sim_time"] = arg["use_sim_time"]
    if arg["agentview_topic"] or arg["wrist_topic"]:
        cameras = resolve_platform(arg["platform"], config_dir=config)["policy_node"].params["camera_topics"]
        overrides["policy_node"]["camera_topics"] = [arg["agentview_topic"] or cameras[0],
                                                     arg["wrist_topic"] or cameras[1]]
    # Checks names, keys, types and joint names here: a mistake fails the launch, not a node later.
    resolved = resolve_platform(arg["platform"], robot=arg["robot_type"] or None, overrides=overrides,
                                config_dir=config)
    # the real platform's Franka Hand needs franka_ros2: refuse the launch rather than run without a gripper
    gripper_output = resolved["executor_node"].params["gripper_output"]
    if arg["executor_params"]:  # the extra file may choose another gripper output
        try:
            gripper_output = node_section(Path(arg["executor_params"]), "executor_node").get(
                "gripper_output", gripper_output)
        except (OSError, ValueError):
            pass  # the node reads (and judges) that file itself
    check_gripper_output(gripper_output)
    specs = []
    for name in ("policy_node", "executor_node"):
        params = [*(str(path) for path in resolved[name].files), resolved[name].overrides]
        extra = arg["policy_params" if name == "policy_node" else "executor_params"]
        if extra:
            params.append(extra)  # last: wins over everything above
        specs.append(NodeSpec(name, params, namespace=arg["namespace"]))
    # required: when one exits (e.g. it cannot start), the launch stops with its reason
    return launch_nodes(specs, output="screen", emulate_tty=True, additional_env=middleware_environment())


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": a.launch_choices()} if a.choices else {}))
                for a in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
