"""Rollouts (`diagnose --rollout`): whole closed-loop episodes of a policy through the real executor core in
the simulation without ROS; where a failed episode ended; determinism; the one-line errors."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mujoco")

from vla_adapter_ros.sim.scene import CUBE_HALF_M  # noqa: E402
from vla_adapter_ros.sim.tasks import TASKS  # noqa: E402
from vla_adapter_ros.train.rollout import format_rollouts, rollout_report  # noqa: E402
from vla_adapter_ros.train.targeting import TargetingError  # noqa: E402

IO = {"action_space": "eef_delta", "dt": 0.1, "gripper_index": 6, "gripper_open_value": 1.0,
      "gripper_closed_value": 0.0, "proprio_layout": "eef_axisangle_fingers"}


class FakePolicy:
    """A policy object as rollouts take one (``config.platform`` and ``predict``), driven by ``rows(proprio)``;
    it keeps what it was shown."""

    config = SimpleNamespace(platform=SimpleNamespace(action_dim=7, proprio_dim=8, num_images=2, chunk_len=8))

    def __init__(self, rows):
        self.rows = rows
        self.seen = []

    def predict(self, images, instruction, proprio):
        self.seen.append((tuple(i.shape for i in images), instruction, np.array(proprio)))
        arm = np.asarray(self.rows(np.asarray(proprio)), dtype=np.float64)
        return np.concatenate([arm, np.ones((len(arm), 1))], axis=1)  # gripper column: open


def steer_to(goal, speed=0.15, dt=0.1, horizon=8):
    """EEF-delta rows from the observed tool position (proprio[:3]) straight to ``goal`` at ``speed``."""
    def rows(proprio):
        remaining = np.asarray(goal) - proprio[:3]
        out = np.zeros((horizon, 6))
        for i in range(horizon):
            step = remaining * min(1.0, speed * dt / max(np.linalg.norm(remaining), 1e-12))
            out[i, :3], remaining = step, remaining - step
        return out
    return rows


def reach_goal(env, seed):
    TASKS["reach_red"].reset(env, seed)
    return env.cube_pose("red")[0] + np.array([0.0, 0.0, CUBE_HALF_M + 0.015])


def test_a_policy_that_steers_to_the_goal_reaches_it(env):
    goal = reach_goal(env, 1000)
    policy = FakePolicy(steer_to(goal))
    r = rollout_report(policy, ["reach_red"], [1000], io=IO, image_size=(64, 64), env=env, progress=False)
    (ep,) = r["episodes"]
    assert ep["success"] and r["overall"] == {"episodes": 1, "successes": 1, "success_rate": 1.0}
    assert ep["goal_distance_m"] < TASKS["reach_red"].tolerance_m
    assert 0.5 < ep["sim_seconds"] < TASKS["reach_red"].max_duration_s
    assert ep["chunks"] >= 3 and ep["chunks_rejected"] == 0 and ep["reject_reasons"] == []
    # the tool ends where the goal is: 1.5 cm above the cube's top face, i.e. 4 cm above its centre
    assert ep["closest_to_target_m"] == pytest.approx(CUBE_HALF_M + 0.015, abs=TASKS["reach_red"].tolerance_m)
    # what the policy saw: both cameras at the asked size, the task's instruction, the tool at the observation
    shapes, instruction, proprio = policy.seen[0]
    assert shapes == ((64, 64, 3), (64, 64, 3)) and instruction == "reach the red cube"
    assert np.linalg.norm(proprio[:3] - goal) > 0.2  # the first observation: the ready pose, far from the goal
    assert np.linalg.norm(policy.seen[-1][2][:3] - goal) < np.linalg.norm(proprio[:3] - goal) - 0.15
    text = format_rollouts(r)
    assert "reach_red" in text and "1/1" in text and "failed episodes" not in text


def test_a_failed_episode_says_where_it_ended(env):
    TASKS["reach_red"].reset(env, 1001)
    start = env.eef_pose().position.copy()
    cube = env.cube_pose("red")[0].copy()
    policy = FakePolicy(lambda proprio: np.zeros((8, 6)))  # stays where it is
    r = rollout_report(policy, ["reach_red"], [1001], io=IO, image_size=(32, 32), max_duration_s=1.0, env=env,
                       progress=False, instruction="stay")
    (ep,) = r["episodes"]
    goal = cube + np.array([0.0, 0.0, CUBE_HALF_M + 0.015])
    assert not ep["success"] and ep["sim_seconds"] == pytest.approx(1.0, abs=0.01)
    assert ep["goal_distance_m"] == pytest.approx(np.linalg.norm(start - goal), abs=2e-3)
    assert ep["final_to_target_m"] == pytest.approx(np.linalg.norm(start - cube), abs=2e-3)
    assert ep["path_m"] < 0.005 and ep["gripper_closed_chunks"] == 0
    assert {s[1] for s in policy.seen} == {"stay"} and r["tasks"]["reach_red"]["instruction"] == "stay"
    text = format_rollouts(r)
    assert "0/1" in text and "reach_red seed 1001: sim_seconds 1.0, goal_distance_m" in text


def test_task_progress_measures_what_success_tests(env):
    push, lift = TASKS["push_blue_left"], TASKS["lift_green"]
    push.reset(env, 1000)
    assert push.progress(env) == pytest.approx({"shift_left_m": 0.0, "moved_m": 0.0}, abs=1e-3)
    lift.reset(env, 1000)
    p = lift.progress(env)
    assert p["lift_m"] == pytest.approx(0.0, abs=2e-3) and p["fingers_touching"] == 0


def test_non_finite_actions_and_bad_arguments_are_clear_errors(env):
    nan = FakePolicy(lambda proprio: np.full((8, 6), np.nan))
    with pytest.raises(TargetingError, match="reach_red seed 1000: the model produced non-finite actions"):
        rollout_report(nan, ["reach_red"], [1000], io=IO, image_size=(32, 32), env=env, progress=False)
    still = FakePolicy(lambda proprio: np.zeros((8, 6)))
    for kwargs, match in [({"latency_s": -0.1}, "latency must be >= 0"), ({"max_duration_s": 0.0}, "max duration"),
                          ({"max_duration_s": float("nan")}, "max duration"), ({"seeds": []}, "no seeds")]:
        args = {"seeds": [1000], **kwargs}
        with pytest.raises(TargetingError, match=match):
            rollout_report(still, ["reach_red"], io=IO, image_size=(32, 32), env=env, progress=False, **args)
    joints = FakePolicy(lambda proprio: np.zeros((8, 6)))
    with pytest.raises(TargetingError, match="EEF-delta chunks; this policy outputs joint_position"):
        rollout_report(joints, ["reach_red"], [1000], io={**IO, "action_space": "joint_position"},
                       image_size=(32, 32), env=env, progress=False)


def test_cli_on_a_tiny_random_checkpoint_is_deterministic(tiny_checkpoint, tmp_path, capsys):
    from vla_adapter_ros.train import diagnose as dg

    p = argparse.ArgumentParser()
    dg.add_arguments(p)
    outs = []
    for name in ("a.json", "b.json"):
        args = p.parse_args([str(tiny_checkpoint), "--rollout", "--tasks", "reach_red", "--seeds", "1000", "1",
                             "--max-duration", "0.6", "--image-size", "64", "64", "--device", "cpu",
                             "--no-progress", "--output", str(tmp_path / name)])
        assert dg.run(args) == 0
        outs.append(json.loads((tmp_path / name).read_text()))
    a, b = outs
    assert a["episodes"] == b["episodes"] and a["overall"]["episodes"] == 1
    ep = a["episodes"][0]
    assert ep["chunks"] + ep["chunks_rejected"] >= 1 and "targeting" not in a
    assert (ep["chunks_rejected"] > 0) == bool(ep["reject_reasons"])  # random weights: the executor says why
    assert "closed loop without ROS" in capsys.readouterr().out
    assert dg.run(p.parse_args([str(tiny_checkpoint), "--rollout", "--latency", "-1", "--no-progress"])) == 2
    assert "latency must be >= 0" in capsys.readouterr().err


def test_executor_parameter_files_apply(env, tmp_path):
    """--params reaches the executor core: a later refill asks for chunks far more often."""
    still = FakePolicy(lambda proprio: np.zeros((8, 6)))
    run = {"io": IO, "image_size": (32, 32), "max_duration_s": 1.0, "env": env, "progress": False}
    default = rollout_report(still, ["reach_red"], [1000], **run)["episodes"][0]
    eager = tmp_path / "eager.yaml"
    eager.write_text("executor_node:\n  ros__parameters:\n    refill_threshold_s: 0.75\n")
    often = rollout_report(still, ["reach_red"], [1000], params=[str(eager)], **run)
    assert default["chunks"] <= 4 and often["episodes"][0]["chunks"] >= 7 and often["params"] == [str(eager)]
    with pytest.raises(TargetingError, match="parameter file not found: .*nope.yaml"):
        rollout_report(still, ["reach_red"], [1000], params=[str(tmp_path / "nope.yaml")], **run)


def test_targeting_with_one_instruction_for_every_task(env):
    """A language-blind baseline is scored with the text it was trained on."""
    from vla_adapter_ros.train.targeting import targeting_report

    policy = FakePolicy(lambda proprio: np.zeros((8, 6)))
    r = targeting_report(policy, ["reach_red", "lift_green"], [1000], io=IO, image_size=(32, 32), expert=False,
                         env=env, instruction="do the task", progress=False)
    assert {s[1] for s in policy.seen} == {"do the task"} and len(policy.seen) == 2
    assert {t["instruction"] for t in r["tasks"].values()} == {"do the task"}
