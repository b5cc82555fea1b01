"""The YAML files in config/ match what the nodes declare (no typos, no stale keys, same types)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _node_params(path: Path, node: str) -> dict:
    data = yaml.safe_load(path.read_text())
    return data[node]["ros__parameters"]


def _same_kind(a, b) -> bool:
    number = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, number) and isinstance(b, number):
        return isinstance(a, float) == isinstance(b, float)
    if isinstance(a, list) and isinstance(b, list):
        return not a or not b or _same_kind(a[0], b[0])
    return type(a) is type(b)


NODES = ("policy_node", "executor_node", "sim_node", "recorder_node", "libero_node")
ROS_PARAMETERS = {"use_sim_time": False}  # declared by every rclpy node
NODE_CONFIGS = [(path, node) for node in NODES
                for path in sorted(CONFIG.glob(node.removesuffix("_node") + "*.yaml"))
                if not path.stem.endswith("_stack")]


def _defaults(node: str) -> dict:
    pytest.importorskip("rclpy")
    import importlib

    return {**ROS_PARAMETERS, **importlib.import_module(f"vla_adapter_ros.nodes.{node}").DEFAULTS}


@pytest.mark.parametrize("path, node", NODE_CONFIGS, ids=lambda x: getattr(x, "name", x))
def test_node_config_matches_node_parameters(path, node):
    DEFAULTS = _defaults(node)
    params = _node_params(path, node)
    unknown = sorted(set(params) - set(DEFAULTS))
    assert not unknown, f"{path.name}: keys the node does not declare: {unknown}"
    wrong = {k: (params[k], DEFAULTS[k]) for k in params if not _same_kind(params[k], DEFAULTS[k])}
    assert not wrong, f"{path.name}: types differ from the node's declarations: {wrong}"


@pytest.mark.parametrize("node", NODES)
def test_default_config_equals_node_defaults(node):
    path = CONFIG / (node.removesuffix("_node") + ".yaml")
    defaults = {k: v for k, v in _defaults(node).items() if k not in ROS_PARAMETERS}
    assert _node_params(path, node) == defaults


def test_stack_files_load():
    from vla_adapter_ros.supervisor import load_stack

    for path in sorted(CONFIG.glob("*_stack.yaml")):
        specs = load_stack(path)
        assert {s.name for s in specs} <= set(NODES)
        for spec in specs:
            for params in spec.params:
                assert spec.name in yaml.safe_load(params.read_text()), f"{params.name} lacks {spec.name}"
