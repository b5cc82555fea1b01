"""`vla-adapter-ros replay`: a dataset episode's own actions served as a policy's chunks (pure parts), the
dataset loader that finds each episode's scene, and the command line's checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_adapter_ros.inference.io_spec import IOSpec
from vla_adapter_ros.replay import ReplayChunker, _header_stamp, load_replay_dataset, main

IO = IOSpec(action_space="eef_delta", dt=0.1, action_dim=7, gripper_index=6, gripper_open_value=1.0,
            gripper_closed_value=0.0)


def _actions(n=5):
    arm = 0.001 * np.arange(1, n + 1)[:, None] * np.array([1.0, -2.0, 3.0, 0.1, 0.2, -0.3])
    grip = np.array([1.0, 1.0, 0.0, 0.0, 0.0][:n])  # dataset gripper column: 1 open, 0 closed
    return np.concatenate([arm, grip[:, None]], axis=1)


def test_chunk_is_the_rows_from_the_observations_frame_on():
    acts = _actions()
    chunker = ReplayChunker(acts, IO, horizon=8)
    arm, closure, k = chunker.chunk(100.0)  # the first observation is frame 0
    assert k == 0 and arm.shape == (8, 6) and closure.shape == (8,)
    np.testing.assert_allclose(arm[:5], acts[:, :6])
    np.testing.assert_allclose(arm[5:], 0.0)  # past the episode's end: hold (zero deltas)
    np.testing.assert_allclose(closure, [0, 0, 1, 1, 1, 1, 1, 1])  # closure 0 open .. 1 closed, last one held
    arm, closure, k = chunker.chunk(100.21)  # 0.21 s later: frame 2
    assert k == 2
    np.testing.assert_allclose(arm[:3], acts[2:, :6])
    np.testing.assert_allclose(arm[3:], 0.0)
    arm, closure, k = chunker.chunk(105.0)  # long after the end: only the hold
    assert k == 50 and np.allclose(arm, 0.0) and np.allclose(closure, 1.0)


def test_joint_position_replay_holds_the_last_target():
    io = IOSpec(action_space="joint_position", dt=0.05, action_dim=8, gripper_index=7, proprio_layout="joints")
    acts = np.concatenate([np.linspace(0, 1, 3)[:, None] * np.ones((3, 7)), np.ones((3, 1))], axis=1)
    arm, closure, _ = ReplayChunker(acts, io, horizon=4).chunk(3.0)
    np.testing.assert_allclose(arm[2:], np.ones((2, 7)))  # last target repeated
    np.testing.assert_allclose(closure, 0.0)


def test_header_stamp_of_a_serialized_image():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345_000_000
    assert _header_stamp(serialize_message(msg)) == pytest.approx(12.345)


def test_dataset_loader_finds_the_scene_of_each_episode(tmp_path):
    pytest.importorskip("pyarrow")
    from vla_adapter_ros.data.bag_io import make_typestore
    from vla_adapter_ros.data.convert import ConvertConfig, convert
    from vla_adapter_ros.data.synthetic import Q_HOME, write_synthetic_bag

    ts = make_typestore()
    bags = []
    for name, n in (("a", 8), ("b", 6)):
        bags.append(write_synthetic_bag(tmp_path / "bags", name, n_frames=n, typestore=ts,
                                        q_of_frame=lambda x: Q_HOME + 0.01 * x))
    (bags[0] / "sim_episode.json").write_text(json.dumps({"task": "reach_red", "seed": 1003, "start_jitter": 0.0}))
    cfg = ConvertConfig.from_dict(dict(camera_topics=["/camera/primary/image_raw", "/camera/wrist/image_raw"],
                                       trim_idle=False, image_size=None))
    convert(bags, tmp_path / "ds", cfg)
    data = load_replay_dataset(tmp_path / "ds")
    assert data.skipped == 1 and len(data.episodes) == 1  # the bag without a scene cannot be replayed
    ep = data.episodes[0]
    assert (ep.task, ep.seed, ep.start_jitter, ep.instruction) == ("reach_red", 1003, 0.0, "pick up the cube")
    assert ep.actions.shape == (7, 7) and data.dt == pytest.approx(0.1) and data.io.action_space == "eef_delta"
    assert data.io.gripper_index == 6 and data.io.gripper_open_value == 1.0


def test_command_line_checks(tmp_path, capsys):
    out = tmp_path / "out"
    for argv, line in [(["--oracle", str(tmp_path)], "replay: --oracle takes no dataset"),
                       ([], "replay: give a DATASET to replay, or --oracle"),
                       (["--oracle", "--tasks", "fly"],
                        "replay: unknown task 'fly'; known: ['lift_green', 'push_blue_left', 'reach_red']"),
                       (["--oracle", "--start-jitter", "3"], "replay: start jitter must be in [0, 1], got 3.0"),
                       (["--oracle", "--horizon", "0"], "replay: --horizon must be positive, got 0"),
                       ([str(tmp_path / "nope")], f"replay: {tmp_path / 'nope'}: "),
                       (["--oracle", "--params", str(tmp_path / "none.yaml")],
                        f"replay: {tmp_path / 'none.yaml'}: parameter file not found")]:
        assert main([*argv, "--output", str(out)]) == 2, argv
        captured = capsys.readouterr()
        assert captured.err.startswith(line) and captured.err.count("\n") == 1 and captured.out == "", captured
    assert not out.exists()  # nothing started, nothing written
