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


NODE_CONFIGS = [(path, node) for node in ("policy_node", "executor_node")
                for path in sorted(CONFIG.glob(node.removesuffix("_node") + "*.yaml"))]


def _defaults(node: str) -> dict:
    pytest.importorskip("rclpy")
    import importlib

    return importlib.import_module(f"vla_adapter_ros.nodes.{node}").DEFAULTS


@pytest.mark.parametrize("path, node", NODE_CONFIGS, ids=lambda x: getattr(x, "name", x))
def test_node_config_matches_node_parameters(path, node):
    DEFAULTS = _defaults(node)
    params = _node_params(path, node)
    unknown = sorted(set(params) - set(DEFAULTS))
    assert not unknown, f"{path.name}: keys the node does not declare: {unknown}"
    wrong = {k: (params[k], DEFAULTS[k]) for k in params if not _same_kind(params[k], DEFAULTS[k])}
    assert not wrong, f"{path.name}: types differ from the node's declarations: {wrong}"


@pytest.mark.parametrize("node", ["policy_node", "executor_node"])
def test_default_config_equals_node_defaults(node):
    path = CONFIG / (node.removesuffix("_node") + ".yaml")
    assert _node_params(path, node) == _defaults(node)
