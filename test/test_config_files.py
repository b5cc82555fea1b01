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


@pytest.mark.parametrize("path", sorted(CONFIG.glob("policy*.yaml")), ids=lambda p: p.name)
def test_policy_config_matches_node_parameters(path):
    pytest.importorskip("rclpy")
    from vla_adapter_ros.nodes.policy_node import DEFAULTS

    params = _node_params(path, "policy_node")
    unknown = sorted(set(params) - set(DEFAULTS))
    assert not unknown, f"{path.name}: keys the node does not declare: {unknown}"
    wrong = {k: (params[k], DEFAULTS[k]) for k in params if not _same_kind(params[k], DEFAULTS[k])}
    assert not wrong, f"{path.name}: types differ from the node's declarations: {wrong}"


def test_default_policy_config_equals_node_defaults():
    pytest.importorskip("rclpy")
    from vla_adapter_ros.nodes.policy_node import DEFAULTS

    assert _node_params(CONFIG / "policy.yaml", "policy_node") == DEFAULTS
