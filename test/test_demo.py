"""The README's demo command, end to end (random-weight model: the plumbing, not the skill)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

from vla_adapter_ros.demo import keep_up_real_time_factor  # noqa: E402


def test_demo_runs_episodes_and_writes_outputs(ros_domain, tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "vla_adapter_ros.cli", "demo", "--episodes", "1", "--max-duration", "2.0",
         "--tasks", "reach_red", "lift_green", "--checkpoint", "random", "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text + (out / "nodes.log").read_text()[-3000:]
    assert "RANDOM WEIGHTS" in text  # clearly labelled
    assert "episode 0: reach_red seed 1000:" in text and "episode 1: lift_green seed 1000:" in text
    summary = json.loads((out / "summary.json").read_text())
    assert [(e["task"], e["seed"]) for e in summary["episodes"]] == [("reach_red", 1000), ("lift_green", 1000)]
    assert [e["instruction"] for e in summary["episodes"]] == ["reach the red cube", "lift the green cube"]
    assert set(summary["per_task"]) == {"reach_red", "lift_green", "average"}
    assert summary["per_task"]["average"]["episodes"] == 2
    assert "average" in text and "reach_red" in text  # the success table is printed
    for entry in summary["episodes"]:
        assert entry["sim_seconds"] >= 2.0 and entry["chunks"] > 0
        assert entry["video"].endswith(".mp4") and "gif" not in entry
        assert (out / entry["plot"]).stat().st_size > 10_000
        _check_video(out / entry["video"], entry["sim_seconds"])
    assert "episode 2/2 lift_green" in text  # the bar names the episode (and its simulated time)
    # --real-time-factor auto (the default): chosen from the policy's warm-up and said at start
    match = re.search(r"real-time factor (\d+\.\d\d) \(auto: one prediction took (\d+) ms at warm-up", text)
    assert match, text
    assert summary["real_time_factor"] == pytest.approx(float(match.group(1)), abs=0.006)
    assert summary["real_time_factor_chosen"] == "auto"
    assert summary["real_time_factor"] == pytest.approx(keep_up_real_time_factor(float(match.group(2)), 0.3), abs=0.02)
    log = (out / "nodes.log").read_text()
    assert "[sim_node]" in log and "[policy_node]" in log and "[executor_node]" in log
    assert "stopped: sim_node=" in log  # every node was stopped and reaped


def _check_video(path, sim_seconds: float) -> None:
    """An MP4 that decodes: both cameras side by side under a text band, about one frame per 0.1 s
    simulated (the cameras' 10 Hz) plus the held last frame."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    assert w == 896 and h > 448
    assert 0.5 * sim_seconds * 10 <= len(frames) <= sim_seconds * 10 + 20
    band = frames[0][: h - 448]
    assert band.std() > 20  # the instruction, clock and verdict are drawn on it
    assert frames[0][h - 448:].std() > 10  # and the cameras are not blank


def test_keep_up_real_time_factor():
    """The simulation advances at most margin x the executor's refill lead time while one prediction runs."""
    assert keep_up_real_time_factor(100.0, 0.3) == 1.0  # fast enough: real time
    assert keep_up_real_time_factor(600.0, 0.3) == pytest.approx(0.35)  # 0.7 * 0.3 s / 0.6 s
    assert keep_up_real_time_factor(3000.0, 0.3, margin=0.5) == pytest.approx(0.05)
    assert keep_up_real_time_factor(1e6, 0.3) == 0.02  # never a frozen simulation
    assert keep_up_real_time_factor(0.0, 0.3) == 1.0 and keep_up_real_time_factor(float("nan"), 0.3) == 1.0
    from vla_adapter_ros.demo import _real_time_factor

    assert _real_time_factor("auto") == "auto" and _real_time_factor("AUTO") == "auto"
    assert _real_time_factor("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match="expected auto or a number, got 'fast'"):
        _real_time_factor("fast")


def test_media_arguments():
    import argparse

    from vla_adapter_ros import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert parser.parse_args([]).media == "mp4"
    assert parser.parse_args(["--media", "gif"]).media == "gif"
    assert parser.parse_args(["--no-media"]).no_media  # kept; the demo reads it as --media none
    with pytest.raises(SystemExit):
        parser.parse_args(["--media", "avi"])


def test_plot_limits_come_from_the_executors_robot(tmp_path):
    from vla_adapter_ros.demo import _stack_file, executor_robot
    from vla_adapter_ros.supervisor import load_stack

    files = [p for spec in load_stack(_stack_file()) if spec.name == "executor_node" for p in spec.params]
    assert executor_robot(files) == "fr3_sim"  # config/executor_sim.yaml
    override = tmp_path / "robot.yaml"
    override.write_text("executor_node:\n  ros__parameters:\n    robot: panda\n")
    assert executor_robot([*files, override]) == "panda"  # a later --params file wins
    assert executor_robot([tmp_path / "missing.yaml"]) == "fr3_sim"


def test_progress_moves_within_an_episode():
    from tqdm import tqdm

    from vla_adapter_ros.demo import _episode_progress

    bar = tqdm(total=3, disable=True)
    _episode_progress(bar, 1, 2.0, 8.0, "2/3 lift_green")
    assert bar.n == pytest.approx(1.25)
    assert bar.desc == "episode 2/3 lift_green t= 2.0/8.0 s sim"
    _episode_progress(bar, 1, 30.0, 8.0, "2/3 lift_green")  # past the limit: not the next episode yet
    assert 1.99 <= bar.n < 2
    _episode_progress(bar, 2, 0.0, 0.0, "2/3 lift_green done")
    assert bar.n == 2 and bar.desc == "episode 2/3 lift_green done"


def test_success_table_weighs_tasks_equally():
    from vla_adapter_ros.demo import format_table, success_table

    results = ([{"task": "a", "success": s} for s in (True, True, True, False)]
               + [{"task": "b", "success": s} for s in (True, False)])
    table = success_table(results, ["a", "b", "c"])
    assert table["a"] == {"episodes": 4, "successes": 3, "success_rate": 0.75}
    assert table["b"]["success_rate"] == 0.5 and table["c"]["episodes"] == 0
    assert table["average"]["success_rate"] == pytest.approx(0.625)  # mean of the tasks that ran, not of episodes
    assert table["average"]["successes"] == 4 and table["average"]["episodes"] == 6
    text = format_table(table)
    assert "  3/4    75.0 %" in text and "62.5 %" in text


def test_checkpoint_argument_resolution(tmp_path, monkeypatch):
    from vla_adapter_ros import demo

    assert demo.resolve_checkpoint("random") == ""
    assert demo.resolve_checkpoint(str(tmp_path / "ck")) == str(tmp_path / "ck")
    monkeypatch.setattr(demo, "SHIPPED_CHECKPOINT", tmp_path / "shipped")
    assert demo.resolve_checkpoint("") == ""  # not in this install: random weights (said in the output)
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "config.yaml").write_text("name: x\n")
    assert demo.resolve_checkpoint("") == str(tmp_path / "shipped")


def test_a_self_contained_stack_gets_a_private_domain_unless_one_is_chosen():
    from vla_adapter_ros.stack_session import PRIVATE_DOMAINS, isolate_ros_graph

    env = {}
    line = isolate_ros_graph(env)
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert PRIVATE_DOMAINS[0] <= int(env["ROS_DOMAIN_ID"]) < PRIVATE_DOMAINS[1] and "private" in line
    env = {"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert isolate_ros_graph(env) == "ROS_DOMAIN_ID=7 (from the environment)"
    assert env == {"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}  # the user's choice stands
