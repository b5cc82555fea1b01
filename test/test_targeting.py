"""Targeting (`diagnose --targeting`): geometry, the scripted expert's first chunks, a tiny random checkpoint
end to end (function, CLI, trainer hook), and the one-line errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from vla_adapter_ros.control.kinematics import FrankaKinematics  # noqa: E402
from vla_adapter_ros.sim.env import READY_POSE  # noqa: E402
from vla_adapter_ros.sim.tasks import TASKS  # noqa: E402
from vla_adapter_ros.train.targeting import (  # noqa: E402
    TargetingError,
    blind_direction,
    expert_first_chunk,
    format_targeting,
    heads_for,
    net_translation,
    policy_from_model,
    targeting_report,
)

P = np.array([0.3, 0.0, 0.5])
CUBES = {"red": np.array([0.5, 0.2, 0.02]), "green": np.array([0.5, 0.0, 0.02]), "blue": np.array([0.5, -0.2, 0.02])}
SUMMARY_KEYS = {"rate", "mean_cos", "none", "heads_for", "mean_move_mm"}


# ------------------------------------------------------------------------------------------ geometry
def test_heads_for_the_cube_with_the_largest_cosine():
    k, cos = heads_for(CUBES["blue"] - P, P, CUBES)
    assert k == "blue" and cos["blue"] == pytest.approx(1.0) and cos["blue"] > cos["green"] > cos["red"]
    k, cos = heads_for(0.01 * (CUBES["red"] - P) / np.linalg.norm(CUBES["red"] - P), P, CUBES)  # 1 cm is enough
    assert k == "red"
    assert heads_for([0.0, 0.0009, 0.0], P, CUBES) == (None, {"red": 0.0, "green": 0.0, "blue": 0.0})  # < 1 mm
    assert heads_for([np.nan, 0.0, 0.0], P, CUBES)[0] is None


def test_net_translation_of_each_action_space():
    rows = np.zeros((8, 6))
    rows[:, 1] = -0.01  # 8 rows of 1 cm to the robot's right
    rows[:, 3:] = 0.3  # rotation is not translation
    np.testing.assert_allclose(net_translation("eef_delta", rows), [0.0, -0.08, 0.0])
    # a joint chunk through FK: 8 rows from the ready pose to a pose 6 cm toward the blue cube
    kin = FrankaKinematics()
    start = kin.fk(READY_POSE)
    goal = start.copy()
    goal[:3, 3] += 0.06 * (CUBES["blue"] - start[:3, 3]) / np.linalg.norm(CUBES["blue"] - start[:3, 3])
    q1, ok = kin.ik_to_pose(READY_POSE, goal)
    assert ok
    path = READY_POSE + np.linspace(0.0, 1.0, 9)[1:, None] * (q1 - READY_POSE)
    d = net_translation("joint_position", path, READY_POSE)
    np.testing.assert_allclose(d, goal[:3, 3] - start[:3, 3], atol=1e-6)
    assert heads_for(d, start[:3, 3], CUBES)[0] == "blue"
    np.testing.assert_allclose(net_translation("joint_delta", np.diff(np.vstack([READY_POSE, path]), axis=0),
                                               READY_POSE), d, atol=1e-12)
    with pytest.raises(TargetingError, match="measured joint"):
        net_translation("joint_delta", path)


# ------------------------------------------------------------------------------------------ expert
def test_expert_first_chunk_heads_for_the_instructed_cube(env):
    from vla_adapter_ros.control.limits import load_robot_limits

    limits = load_robot_limits("fr3_sim")
    for task in TASKS.values():  # 8 rows of 0.1 s, as the simulation datasets
        got = []
        for seed in (1000, 1001, 1002):
            task.reset(env, seed)
            p = env.eef_pose().position
            d = net_translation("eef_delta", expert_first_chunk(env, task, 8, 0.1, limits))
            got.append(heads_for(d, p, {c: env.cube_pose(c)[0] for c in env.cubes})[0])
        assert got == [task.target] * 3, task.name
    # on 10 seeds the push expert's first chunk heads for blue on 6 only (it aims beside the cube, where it
    # starts pushing), while the blind direction ("move right and down") does on 9: see blind in the report
    push = TASKS["push_blue_left"]
    blind = blind_direction(env, push)
    hits = {"expert": 0, "blind": 0}
    for seed in range(1000, 1010):
        push.reset(env, seed)
        p = env.eef_pose().position
        cubes = {c: env.cube_pose(c)[0] for c in env.cubes}
        d = net_translation("eef_delta", expert_first_chunk(env, push, 8, 0.1, limits))
        hits["expert"] += heads_for(d, p, cubes)[0] == "blue"
        hits["blind"] += heads_for(blind, p, cubes)[0] == "blue"
    assert hits == {"expert": 6, "blind": 9}


# ------------------------------------------------------------------------------------------ model
def test_report_on_a_tiny_random_checkpoint(tiny_checkpoint, tmp_path, capsys):
    from vla_adapter_ros.train import diagnose as dg

    r = targeting_report(tiny_checkpoint, seeds=[1000], image_size=(64, 64), progress=False)
    assert list(r["tasks"]) == list(TASKS) and r["seeds"] == [1000] and r["chance"] == pytest.approx(1 / 3)
    assert (r["action_space"], r["chunk_len"], r["cameras"], r["image_size"]) == (
        "eef_delta", 8, ["agentview", "wrist"], [64, 64])
    for name, t in r["tasks"].items():
        assert t["target"] == TASKS[name].target and t["seeds"] == 1
        for who in ("model", "expert", "blind"):
            assert set(t[who]) == SUMMARY_KEYS and 0.0 <= t[who]["rate"] <= 1.0 and -1.0 <= t[who]["mean_cos"] <= 1.0
            assert sum(t[who]["heads_for"].values()) == 1
        assert t["expert"]["rate"] == 1.0 and t["expert"]["none"] == 0
    assert len(r["samples"]) == 3 and set(r["overall"]) == {"model", "expert", "blind"}
    table = format_targeting(r)
    assert "reach_red" in table and "chance" in table and "blind" in table
    # the CLI (no dataset: targeting implied) reproduces the numbers exactly
    p = argparse.ArgumentParser()
    dg.add_arguments(p)
    out = tmp_path / "t.json"
    assert dg.run(p.parse_args([str(tiny_checkpoint), "--seeds", "1000", "1", "--image-size", "64", "64",
                                "--device", "cpu", "--json", str(out), "--no-progress"])) == 0
    assert "first chunk heads for the instructed cube" in capsys.readouterr().out
    again = json.loads(out.read_text())
    assert [s["model"]["d"] for s in again["samples"]] == [s["model"]["d"] for s in r["samples"]]


def test_live_model_keeps_its_mode_and_the_callers_rng(tiny_checkpoint, env):
    from vla_adapter_ros.model.checkpoint import load_checkpoint
    from vla_adapter_ros.model.processor import QwenTokenizer

    model, norm = load_checkpoint(tiny_checkpoint)
    model.train()
    policy = policy_from_model(model, norm, QwenTokenizer.load(tiny_checkpoint))
    state = torch.get_rng_state()
    r = targeting_report(policy, ["lift_green"], [1001], image_size=(32, 32), expert=False, env=env,
                         progress=False)
    assert model.training and torch.equal(torch.get_rng_state(), state)
    assert set(r["tasks"]["lift_green"]) == {"instruction", "target", "seeds", "model", "blind"}


def test_trainer_hook_logs_the_targeting_rate(tmp_path):
    """A joint-delta dataset (synthetic bags): the hook reads the I/O and cameras from it, FK does the rest."""
    from vla_adapter_ros.data.convert import ConvertConfig, convert
    from vla_adapter_ros.data.synthetic import write_synthetic_bag
    from vla_adapter_ros.train.finetune import Trainer, TrainConfig

    pytest.importorskip("peft")
    bags = [write_synthetic_bag(tmp_path / "bags", f"ep{i}", n_frames=6, instruction="lift the green cube")
            for i in range(2)]
    convert(bags, tmp_path / "ds", ConvertConfig(action_space="joint_delta", proprio_layout="joints_fingers",
                                                  image_size=None))
    cfg = TrainConfig(dataset=str(tmp_path / "ds"), output_dir=str(tmp_path / "run"), base="tiny", max_steps=1,
                      batch_size=2, lora_rank=4, num_workers=0, progress=False, val_fraction=0.0, log_every=1,
                      targeting_every=1, targeting_seeds=1, image_aug=False)
    lines = []
    summary = Trainer(cfg, log=lines.append).fit()
    assert set(summary["targeting"]["tasks"]) == set(TASKS) and 0.0 <= summary["targeting"]["rate"] <= 1.0
    assert any(s.startswith("[train] step 1 targeting ") for s in lines)
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(m["targeting"], m["targeting_blind"]) for m in metrics if "targeting" in m] == [
        (summary["targeting"]["rate"], summary["targeting"]["blind"])]
    with pytest.raises(ValueError, match="targeting_every"):
        TrainConfig(dataset="d", output_dir="o", targeting_every=-1).validate()


# ------------------------------------------------------------------------------------------ errors
def test_clear_errors(tiny_checkpoint, tmp_path, capsys):
    from vla_adapter_ros.train import diagnose as dg

    with pytest.raises(TargetingError, match="checkpoint directory not found"):
        targeting_report(tmp_path / "nope", ["reach_red"], [1000])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("not: [a, config")
    with pytest.raises(TargetingError) as e:
        targeting_report(bad, ["reach_red"], [1000])
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TargetingError, match="task 'stack_cubes'; known: reach_red, push_blue_left, lift_green"):
        targeting_report(tiny_checkpoint, ["reach_red", "stack_cubes"], [1000])
    with pytest.raises(TargetingError, match="no simulation camera"):
        targeting_report(tiny_checkpoint, ["reach_red"], [1000], cameras=["primary", "cam2"])
    p = argparse.ArgumentParser()
    dg.add_arguments(p)
    assert dg.run(p.parse_args([str(tmp_path / "nope"), "--targeting", "--no-progress"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("vla-adapter-ros diagnose: ") and "checkpoint directory not found" in err
    assert err.count("\n") == 1
