"""`vla-adapter-ros libero-eval` end to end with the random-weight tiny model: the LIBERO bridge
(from .venv-libero), the policy node and the executor node (output eef_delta) as separate
processes. A random policy proves the plumbing only: images reach the model, chunks flow, the
environment steps in lockstep, episodes end at the step limit and the table is printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

LIBERO_PYTHON = Path(__file__).resolve().parents[1] / ".venv-libero" / "bin" / "python"


@pytest.mark.skipif(not LIBERO_PYTHON.is_file(), reason="no .venv-libero (scripts/setup_libero.sh)")
def test_libero_eval_plumbing_with_the_tiny_model(ros_domain, tmp_path):
    out = tmp_path / "libero"
    result = subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", "libero-eval", "--suites", "libero_spatial", "--tasks", "3",
         "--episodes-per-task", "2", "--max-steps", "12", "--device", "cpu", "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    text = result.stdout + result.stderr
    log = (out / "nodes_libero_spatial.log").read_text() if (out / "nodes_libero_spatial.log").exists() else ""
    assert result.returncode == 0, text + log[-4000:]
    assert "RANDOM WEIGHTS" in text
    summary = json.loads((out / "summary.json").read_text())
    episodes = summary["episodes"]
    assert [(e["task"], e["init_state"]) for e in episodes] == [(3, 0), (3, 1)]
    instruction = "pick up the black bowl on the cookie box and place it on the plate"
    assert all(e["instruction"] == instruction for e in episodes)
    for e in episodes:
        assert e["steps"] == 12 or e["success"]  # the episode ended at the step limit
        assert e["chunks"] >= 2  # 8-step chunks: the model ran on the bridge's images at least twice
        # a hold while the model computes a chunk (plus one per wall-clock second without a command on a
        # busy machine): at least one, and holds never use up the step budget (steps == 12 above)
        assert e["hold_steps"] >= 1
    assert set(summary["success_rate"]) == {"libero_spatial"}
    assert "| Spatial | Object | Goal | Long | Avg |" in text
    assert "[libero_node]" in log and "[policy_node]" in log and "[executor_node]" in log
    assert "command rejected" not in log and "chunk" not in "".join(
        line for line in log.splitlines() if "rejected" in line)
    assert "stopped: libero_node=0, policy_node=0, executor_node=0" in log
