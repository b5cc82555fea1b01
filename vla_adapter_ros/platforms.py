"""Platforms: which parameter files configure policy_node + executor_node for a robot or simulator.

A platform adds ROS parameter files after the base files (config/policy.yaml, config/executor.yaml):

    real    a Franka through franka_ros2          config/platforms/real.yaml
    mujoco  the built-in MuJoCo sim_node          config/policy_sim.yaml, config/executor_sim.yaml
    gazebo  Gazebo Sim + gz_ros2_control          config/platforms/gazebo.yaml
    isaac   Isaac Sim's ROS 2 bridge              config/platforms/isaac.yaml

`resolve_platform` returns, per node, the files in order, the explicit overrides that go after them
(robot choice, launch arguments) and the effective parameters, and refuses anything a node would
reject or misread: unknown platforms, nodes or keys, wrong value types, joint names that do not
match the executor's robot file, nodes that disagree on shared topics or the clock. Pure Python
(yaml only): keys and types are checked against the base files, which equal the nodes' DEFAULTS
(test/test_config_files.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .paths import config_dir as default_config_dir


PLATFORMS = {
    "real": "a Franka FR3 / Panda through franka_ros2",
    "mujoco": "the built-in MuJoCo simulation (sim_node)",
    "gazebo": "Gazebo Sim with gz_ros2_control and ros_gz_bridge",
    "isaac": "Isaac Sim with its ROS 2 bridge",
}
NODES = ("policy_node", "executor_node")
BASE_FILES = {"policy_node": "policy.yaml", "executor_node": "executor.yaml"}
_MUJOCO_FILES = {"policy_node": "policy_sim.yaml", "executor_node": "executor_sim.yaml"}
ROS_PARAMETERS = {"use_sim_time": False}  # declared by every rclpy node
SHARED_KEYS = ("use_sim_time", "joint_state_topic", "chunk_topic", "request_topic")  # both nodes, same value


class PlatformError(ValueError):
    """A platform name, file or override that the nodes would reject or misread."""


@dataclass
class NodeParams:
    files: list[Path]  # base file, then the platform's: pass them in this order
    overrides: dict[str, Any]  # explicit values, passed after the files
    params: dict[str, Any]  # effective parameters: node defaults < files < overrides


def platform_files(name: str, config_dir: str | Path | None = None) -> dict[str, list[Path]]:
    """The parameter files a platform adds after the base files, per node."""
    if name not in PLATFORMS:
        known = ", ".join(PLATFORMS)
        raise PlatformError(f"unknown platform {name!r}; known platforms: {known}")
    config = Path(config_dir) if config_dir is not None else default_config_dir()
    if name == "mujoco":
        return {node: [config / _MUJOCO_FILES[node]] for node in NODES}
    return {node: [config / "platforms" / f"{name}.yaml"] for node in NODES}


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlatformError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PlatformError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PlatformError(f"{path}: expected a mapping of node names")
    return data


def node_section(path: Path, node: str) -> dict[str, Any]:
    """`node: ros__parameters: {...}` of a parameter file ({} when the file has no such node)."""
    data = _read(path)
    unknown = sorted(set(data) - set(NODES) - {"sim_node", "recorder_node", "/**"})
    if unknown:
        raise PlatformError(f"{path.name}: unknown node sections {unknown} (nodes: {', '.join(NODES)})")
    section = data.get(node)
    if section is None:
        return {}
    params = section.get("ros__parameters") if isinstance(section, dict) else None
    if not isinstance(params, dict):
        raise PlatformError(f"{path.name}: {node} needs a 'ros__parameters' mapping")
    return params


def _same_kind(value: Any, default: Any) -> bool:
    """Would rclpy accept `value` for a parameter declared with `default`? (bool, int, float, str, lists)"""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and isinstance(value, float) == isinstance(default, float)
    if isinstance(default, list):
        return isinstance(value, list) and (not default or all(_same_kind(v, default[0]) for v in value))
    return type(value) is type(default)


def check_params(params: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> None:
    """Every key is a declared parameter and every value has the declared type."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise PlatformError(f"{where}: not parameters of the node: {unknown}")
    wrong = [f"{k}={params[k]!r} (declared {type(defaults[k]).__name__}, default {defaults[k]!r})"
             for k in params if not _same_kind(params[k], defaults[k])]
    if wrong:
        raise PlatformError(f"{where}: wrong type: {'; '.join(wrong)}")


def robot_joint_names(robot: str, config_dir: str | Path | None = None) -> list[str]:
    """Arm joint names of a robot limits file: a bundled name (config/robots/<robot>.yaml) or a path."""
    config = Path(config_dir) if config_dir is not None else default_config_dir()
    path = Path(robot) if Path(robot).suffix in (".yaml", ".yml") else config / "robots" / f"{robot}.yaml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in (config / "robots").glob("*.yaml")))
        raise PlatformError(f"robot {robot!r}: no limits file {path} (bundled: {bundled})")
    names = _read(path).get("joint_names")
    if not (isinstance(names, list) and len(names) == 7 and all(isinstance(n, str) for n in names)):
        raise PlatformError(f"{path}: joint_names must list 7 arm joint names")
    return names


def _prefix(arm_joint_names: list[str]) -> str:
    first = arm_joint_names[0]
    return first[: -len("joint1")] if first.endswith("joint1") else ""


def robot_overrides(robot: str, platform_policy: Mapping[str, Any],
                    config_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Switch both nodes to another robot: the executor's limits file and the policy's joint names
    (arm names from the robot file; finger names keep the platform's pattern with the new prefix)."""
    names = robot_joint_names(robot, config_dir)
    old, new = _prefix(platform_policy["arm_joint_names"]), _prefix(names)
    fingers = [new + f[len(old):] if f.startswith(old) else f for f in platform_policy["finger_joint_names"]]
    return {"policy_node": {"arm_joint_names": list(names), "finger_joint_names": fingers},
            "executor_node": {"robot": robot}}


def resolve_platform(name: str, robot: str | None = None,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None,
                     config_dir: str | Path | None = None) -> dict[str, NodeParams]:
    """Parameters of policy_node and executor_node on platform `name`.

    robot: another robot than the platform's (fr3, panda or a limits-file path; renames the joints).
    overrides: {node: {key: value}} applied last (e.g. launch arguments)."""
    config = Path(config_dir) if config_dir is not None else default_config_dir()
    extra = platform_files(name, config)
    overrides = {node: dict(values) for node, values in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(NODES))
    if unknown:
        raise PlatformError(f"overrides: unknown nodes {unknown} (nodes: {', '.join(NODES)})")

    defaults = {node: {**ROS_PARAMETERS, **node_section(config / BASE_FILES[node], node)} for node in NODES}
    resolved: dict[str, NodeParams] = {}
    for node in NODES:
        params = dict(defaults[node])
        for path in extra[node]:
            section = node_section(path, node)
            check_params(section, defaults[node], f"{path.name} [{node}]")
            params.update(section)
        resolved[node] = NodeParams([config / BASE_FILES[node], *extra[node]], {}, params)

    if robot:
        for node, values in robot_overrides(robot, resolved["policy_node"].params, config).items():
            resolved[node].overrides.update(values)
    for node in NODES:
        values = overrides.get(node, {})
        check_params(values, defaults[node], f"overrides [{node}]")
        resolved[node].overrides.update(values)
        resolved[node].params.update(resolved[node].overrides)

    _check_consistency(name, resolved, config)
    return resolved


def _check_consistency(name: str, resolved: dict[str, NodeParams], config: Path) -> None:
    policy, executor = resolved["policy_node"].params, resolved["executor_node"].params
    arm = policy["arm_joint_names"]
    if len(arm) != 7 or len(set(arm)) != 7:
        raise PlatformError(f"platform {name}: policy_node arm_joint_names needs 7 distinct names, got {arm}")
    if len(policy["finger_joint_names"]) != 2:
        raise PlatformError(f"platform {name}: policy_node finger_joint_names needs 2 names, "
                            f"got {policy['finger_joint_names']}")
    expected = robot_joint_names(executor["robot"], config)
    if list(arm) != expected:
        raise PlatformError(f"platform {name}: policy_node arm_joint_names {arm} differ from the joint names "
                            f"of executor_node's robot {executor['robot']!r}: {expected}")
    for key in SHARED_KEYS:
        if policy[key] != executor[key]:
            raise PlatformError(f"platform {name}: policy_node and executor_node disagree on {key}: "
                                f"{policy[key]!r} vs {executor[key]!r}")
