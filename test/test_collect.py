"""`collect` end to end: sim_node (scripted expert through the JTC + gripper topics) + recorder_node
started by the supervisor, two recorded episodes, then the bags converted into a training set."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mujoco")
pytest.importorskip("pyarrow")

from vla_adapter_ros.data.bag_io import read_episode_metadata  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_collect_two_expert_episodes_and_convert(processes, tmp_path):
    from vla_adapter_ros.collect import RECORDED_TOPICS
    from vla_adapter_ros.data.convert import ConvertConfig, convert, load_dataset

    out = tmp_path / "collect"
    child = processes.start("collect", [
        sys.executable, "-m", "vla_adapter_ros.collect", "--tasks", "reach_red", "--episodes", "2",
        "--seed", "3", "--output", str(out), "--image-size", "96", "96", "--no-progress"])
    deadline = time.monotonic() + 150
    while child.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not child.alive(), "collect did not finish:\n" + child.output()[-3000:]
    log = (out / "nodes.log").read_text() if (out / "nodes.log").exists() else ""
    assert child.proc.returncode == 0, child.output()[-3000:] + "\n" + log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["successes"] == 2 and summary["bags"] == 2, summary
    assert summary["per_task"] == {"reach_red": {"episodes": 2, "successes": 2}}
    assert "2 bags written" in child.output() and str(out) in child.output()
    assert [r["seed"] for r in summary["results"]] == [3, 4]
    bags = [r["bag"] for r in summary["results"]]
    for bag in bags:
        meta = read_episode_metadata(bag)
        assert meta["instruction"] == "reach the red cube" and meta["success"] is True
        counts = meta["message_counts"]
        assert set(counts) == {t.split(":")[0] for t in RECORDED_TOPICS}
        assert counts["/fr3_arm_controller/joint_trajectory"] > 20 and counts["/camera/agentview/image_raw"] > 10
    assert not (out / "bags" / ".partial").exists() or not any((out / "bags" / ".partial").iterdir())
    assert "[up] stopped:" in log  # the stack was shut down

    cfg = ConvertConfig(camera_topics=["/camera/agentview/image_raw", "/camera/wrist/image_raw"],
                        command_topic="/fr3_arm_controller/joint_trajectory",
                        gripper_command_topic="/gripper/command", image_size=(96, 96))
    report = convert(bags, tmp_path / "dataset", cfg)
    assert report["converted"] == 2 and report["failed"] == 0, report
    for b in report["bags"]:
        assert b["frames"] >= 15, b  # ~3 s of reaching at 10 camera frames per second
        assert b["dropped_total"] <= 0.2 * b["ticks"], b
    ds = load_dataset(tmp_path / "dataset", chunk_len=4)
    assert len(ds) == sum(b["frames"] for b in report["bags"])
    item = ds[len(ds) // 2]
    assert item["instruction"] == "reach the red cube"
    assert [im.shape for im in item["images"]] == [(96, 96, 3), (96, 96, 3)]
    actions = np.stack([ds[i]["actions"][0] for i in range(len(ds))])
    assert actions.shape[1] == 7 and np.all(np.isfinite(actions))
    assert np.abs(actions[:, :3]).max() > 1e-3  # the arm moves (eef deltas)
    # reach: the expert closes the gripper when it starts (action 0 = closed, 1 = open)
    assert set(np.unique(actions[:, 6])) <= {0.0, 1.0} and np.mean(actions[:, 6] == 0.0) > 0.8
    # the CLI converter with the flags collect prints works on the same bags
    cli = subprocess.run([sys.executable, "-m", "vla_adapter_ros.data.convert", *bags, str(tmp_path / "ds_cli"),
                          "--cameras", "/camera/agentview/image_raw", "/camera/wrist/image_raw",
                          "--command", "/fr3_arm_controller/joint_trajectory",
                          "--gripper-command", "/gripper/command", "--image-size", "96", "96"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "2 episodes" in cli.stdout, cli.stdout


def test_collect_rejects_bad_start_jitter(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vla_adapter_ros.collect", "--start-jitter", "1.5",
                        "--output", str(tmp_path / "c"), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "start jitter must be in [0, 1], got 1.5" in r.stdout, r.stdout + r.stderr
    assert not (tmp_path / "c").exists()  # nothing started, nothing written
