"""The README's demo command, end to end (random-weight model: the plumbing, not the skill)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_runs_episodes_and_writes_outputs(ros_domain, tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", "demo", "--episodes", "2", "--max-duration", "2.0",
         "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text + (out / "nodes.log").read_text()[-3000:]
    assert "RANDOM WEIGHTS" in text  # clearly labelled
    assert "episode 0: reach_red seed 1000:" in text and "episode 1: reach_red seed 1001:" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [e["seed"] for e in summary["episodes"]] == [1000, 1001]
    for entry in summary["episodes"]:
        assert entry["instruction"] == "reach the red cube"
        assert entry["sim_seconds"] >= 2.0 and entry["chunks"] > 0
        assert (out / entry["gif"]).stat().st_size > 10_000
        assert (out / entry["plot"]).stat().st_size > 10_000
    log = (out / "nodes.log").read_text()
    assert "[sim_node]" in log and "[policy_node]" in log and "[executor_node]" in log
    assert "stopped: sim_node=" in log  # every node was stopped and reaped
