"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# MuJoCo picks its GL backend when it is first imported, whichever test does that: headless EGL.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from ros_harness import ProcessGroup, ros_environment, unique_domain_id  # noqa: E402


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A DDS domain of this test alone, set for the test process too (LOCALHOST discovery)."""
    domain_id = unique_domain_id()
    env = ros_environment(domain_id)
    for key, value in env.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    return domain_id


@pytest.fixture
def processes(ros_domain, tmp_path):
    """Start child processes in the test's domain; they are stopped and reaped even on failure."""
    group = ProcessGroup(ros_domain, tmp_path)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def rclpy_context(ros_domain):
    """An initialised rclpy context in the test's domain, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture(scope="module")
def env():
    """A headless simulation scene shared by a test module (skipped without mujoco), closed after it."""
    pytest.importorskip("mujoco")
    from vla_adapter_ros.sim.env import FrankaSimEnv

    sim = FrankaSimEnv()
    yield sim
    sim.close()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """The tiny preset with random weights, saved as the trainer saves a simulation checkpoint (EEF deltas at
    0.1 s, agentview + wrist; its dataset does not exist, so the simulation renders at 224 x 224)."""
    torch = pytest.importorskip("torch")
    import json

    from vla_adapter_ros.inference.engine import identity_statistics
    from vla_adapter_ros.model.checkpoint import save_checkpoint
    from vla_adapter_ros.model.config import get_config
    from vla_adapter_ros.model.vla import VLAAdapter

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("targeting") / "tiny"
    torch.manual_seed(0)
    save_checkpoint(VLAAdapter(get_config("tiny")).eval(), out, identity_statistics(7, 8))
    (out / "training.json").write_text(json.dumps({
        "step": 0, "dataset": str(out / "no_dataset"), "base": "tiny", "action_space": "eef_delta",
        "proprio_layout": "eef_axisangle_fingers", "dt": 0.1, "gripper_index": 6, "gripper_open_value": 1.0,
        "gripper_closed_value": 0.0, "cameras": ["primary", "wrist"], "lora_rank": None}))
    return out
