"""Converter: synthetic bags with a known trajectory -> LeRobot v3-layout dataset with exact values."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from vla_adapter_ros.control.kinematics import FrankaKinematics, matrix_to_axis_angle
from vla_adapter_ros.data.bag_io import make_typestore
from vla_adapter_ros.data.convert import (
    ConvertConfig,
    ConvertError,
    add_arguments,
    compute_norm_stats,
    convert,
    extract_episode,
    load_dataset,
    run,
)
from vla_adapter_ros.data.synthetic import Q_HOME, write_synthetic_bag

pq = pytest.importorskip("pyarrow.parquet")

V = 0.01 * np.array([1.0, -1.0, 2.0, 1.0, -0.5, 1.0, 3.0])  # rad per frame


@pytest.fixture(scope="module")
def ts():
    return make_typestore()


def ramp(start=0, stop=None):
    """Joints still until frame `start`, moving linearly (V per frame) until `stop`, then still."""

    def q(x):
        x = max(x - start, 0.0)
        if stop is not None:
            x = min(x, stop - start)
        return Q_HOME + V * x

    return q


def cfg(**kw):
    base = dict(action_space="joint_position", proprio_layout="joints_fingers", image_size=None)
    base.update(kw)
    return ConvertConfig.from_dict(base)


def test_joint_position_exact(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "ep0", n_frames=12, q_of_frame=ramp(), typestore=ts)
    out = tmp_path / "ds"
    rep = convert([bag], out, cfg(trim_idle=False))
    assert rep["converted"] == 1 and rep["failed"] == 0
    ds = load_dataset(out, chunk_len=3)
    assert len(ds) == 11  # 12 synced frames, the last has no successor
    for k in range(11):
        it = ds[k]
        assert it["instruction"] == "pick up the cube"
        assert it["images"][0].dtype == np.uint8 and it["images"][0].shape == (16, 16, 3)
        assert it["images"][0][0, 0, 0] == k and it["images"][0][0, 0, 2] == 255 - k  # primary frame index
        assert it["images"][1][0, 0, 0] == k and it["images"][1][0, 0, 2] == 1  # wrist
        np.testing.assert_allclose(it["proprio"], np.concatenate([Q_HOME + V * k, [0.04, 0.04]]), atol=1e-6)
        rows = [min(k + j + 1, 11) for j in range(3)]  # next frames, padded with the last action
        expect = np.stack([np.concatenate([Q_HOME + V * r, [1.0]]) for r in rows])  # gripper open = 1
        np.testing.assert_allclose(it["actions"], expect, atol=1e-6)
        np.testing.assert_array_equal(it["action_mask"], [k + j < 11 for j in range(3)])
    # timestamps and frame indices
    tab = pq.read_table(str(out / "data/chunk-000/file-000.parquet"))
    np.testing.assert_allclose(tab.column("timestamp").to_numpy(), 0.1 * np.arange(11), atol=1e-6)
    assert tab.column("frame_index").to_pylist() == list(range(11))


def test_joint_delta_and_eef_delta(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "ep0", n_frames=6, q_of_frame=ramp(), typestore=ts)
    ep = extract_episode(bag, cfg(action_space="joint_delta", trim_idle=False), ts)
    np.testing.assert_allclose(ep.action[:, :7], np.tile(V, (5, 1)), atol=1e-9)
    ep = extract_episode(bag, cfg(action_space="eef_delta", proprio_layout="eef_axisangle_fingers",
                                  trim_idle=False), ts)
    kin = FrankaKinematics()
    assert ep.action.shape == (5, 7) and ep.proprio.shape == (5, 8)
    for k in range(5):
        a, b = kin.fk(Q_HOME + V * k), kin.fk(Q_HOME + V * (k + 1))
        np.testing.assert_allclose(ep.action[k, :3], b[:3, 3] - a[:3, 3], atol=1e-9)
        np.testing.assert_allclose(ep.action[k, 3:6], matrix_to_axis_angle(b[:3, :3] @ a[:3, :3].T), atol=1e-9)
        np.testing.assert_allclose(ep.proprio[k, :3], a[:3, 3], atol=1e-9)
        np.testing.assert_allclose(ep.proprio[k, 3:6], matrix_to_axis_angle(a[:3, :3]), atol=1e-9)
        np.testing.assert_allclose(ep.proprio[k, 6:], [0.04, 0.04])


def test_max_age_drops_and_counts(tmp_path, ts):
    # joint messages of frames 5 and 6 missing: at tick 5 the newest joint state is 0.05 s old, at 6 0.15 s
    bag = write_synthetic_bag(tmp_path / "bags", "ep0", n_frames=10, q_of_frame=ramp(),
                              skip_joint_frames=[5, 6], typestore=ts)
    ep = extract_episode(bag, cfg(trim_idle=False, max_age={"joints": 0.03}), ts)
    assert ep.report["dropped"]["joints"] == 2
    assert ep.report["synced_frames"] == 8
    # frame 4's successor would be frame 7 (a 3-step jump): that sample is dropped too
    assert ep.report["dropped"]["gap"] == 1 and ep.report["dropped_total"] == 3
    prim = [int(ep.image("primary", k)[0, 0, 0]) for k in range(len(ep.images["primary"]))]
    assert prim == [0, 1, 2, 3, 7, 8]
    np.testing.assert_allclose(ep.action[:, 0], [Q_HOME[0] + V[0] * f for f in (1, 2, 3, 4, 8, 9)], atol=1e-9)
    # a looser limit keeps tick 5 (0.05 s old joint state, sample and hold) but not tick 6
    ep = extract_episode(bag, cfg(trim_idle=False, max_age={"joints": 0.06}), ts)
    assert ep.report["dropped"]["joints"] == 1
    np.testing.assert_allclose(ep.action[4, :7], Q_HOME + V * 4.5, atol=1e-9)  # frame 5 holds the 4.5 state
    assert [int(ep.image("primary", k)[0, 0, 0]) for k in range(len(ep.images["primary"]))] == [0, 1, 2, 3, 4, 7, 8]
    # the joint topic's own timing gap is reported
    assert ep.report["topics"]["joints"]["gaps"] == 1
    assert ep.report["topics"]["joints"]["max_gap_s"] == pytest.approx(0.25)


def test_fixed_rate_clock(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "ep0", n_frames=6, q_of_frame=ramp(), typestore=ts)
    ep = extract_episode(bag, cfg(trim_idle=False, clock="fixed", fps=20.0), ts)
    # ticks every 0.05 s over [0, 0.5]: 11 ticks, last has no successor
    assert ep.report["ticks"] == 11 and ep.action.shape[0] == 10
    prim = [int(ep.image("primary", k)[0, 0, 0]) for k in range(len(ep.images["primary"]))]
    assert prim == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # camera held between its 10 Hz frames
    np.testing.assert_allclose(ep.proprio[:, :7], np.stack([Q_HOME + V * 0.5 * k for k in range(10)]), atol=1e-9)
    # camera max age below the camera period drops the held ticks; every remaining sample would then
    # jump two ticks, so nothing is usable
    with pytest.raises(ConvertError, match=r"no usable sample .*'/camera/primary/image_raw': 5.*'gap': 5"):
        extract_episode(bag, cfg(trim_idle=False, clock="fixed", fps=20.0, max_age={"camera": 0.02}), ts)


def test_idle_trimming_and_static(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "ep0", n_frames=20, q_of_frame=ramp(4, 12), typestore=ts)
    ep = extract_episode(bag, cfg(), ts)
    # moving samples: k = 4..11 (target q(k+1) != q(k)); 19 samples in all
    assert ep.report["trimmed_head"] == 4 and ep.report["trimmed_tail"] == 7 and ep.report["frames"] == 8
    assert int(ep.image("primary", 0)[0, 0, 0]) == 4
    np.testing.assert_allclose(ep.camera_time, 0.1 * np.arange(8), atol=1e-9)
    still = write_synthetic_bag(tmp_path / "bags", "still", n_frames=8, q_of_frame=lambda x: Q_HOME, typestore=ts)
    with pytest.raises(ConvertError, match="static episode"):
        extract_episode(still, cfg(), ts)
    assert extract_episode(still, cfg(keep_static=True), ts).report["static"] is True
    # gripper closing counts as motion even with a still arm
    grip = write_synthetic_bag(tmp_path / "bags", "grip", n_frames=8, q_of_frame=lambda x: Q_HOME,
                               fingers_of_frame=lambda x: np.array([0.04, 0.04]) if x < 4 else np.array([0.01, 0.01]),
                               typestore=ts)
    ep = extract_episode(grip, cfg(), ts)
    assert ep.report["frames"] == 1 and ep.action[0, 7] == 0.0  # frame 3 -> 4: closes (closed value 0)


def test_stats_hand_checked(tmp_path, ts):
    bags = [write_synthetic_bag(tmp_path / "bags", f"ep{i}", n_frames=11, q_of_frame=ramp(), typestore=ts)
            for i in range(2)]
    out = tmp_path / "ds"
    convert(bags, out, cfg(trim_idle=False, dataset_name="synth"))
    stats = json.loads((out / "meta/dataset_statistics.json").read_text())["synth"]
    # joint 1 actions: Q_HOME[0] + V[0] * {1..10}, twice -> 20 values
    vals = np.sort(np.concatenate([Q_HOME[0] + V[0] * np.arange(1, 11)] * 2))
    h = 0.01 * (len(vals) - 1)  # linear interpolation between order statistics (numpy's default)
    q01 = vals[int(h)] + (h - int(h)) * (vals[int(h) + 1] - vals[int(h)])
    h = 0.99 * (len(vals) - 1)
    q99 = vals[int(h)] + (h - int(h)) * (vals[int(h) + 1] - vals[int(h)])
    assert q01 == pytest.approx(Q_HOME[0] + 0.01 + 0.19 * 0.0)  # h = 0.19 between two equal values
    assert q99 == pytest.approx(Q_HOME[0] + 0.1)
    a = stats["action"]
    assert a["q01"][0] == pytest.approx(q01, abs=1e-7) and a["q99"][0] == pytest.approx(q99, abs=1e-7)
    assert a["min"][0] == pytest.approx(Q_HOME[0] + 0.01) and a["max"][0] == pytest.approx(Q_HOME[0] + 0.1)
    assert a["mean"][0] == pytest.approx(Q_HOME[0] + 0.055) and a["std"][0] == pytest.approx(np.std(vals))
    # joint 2 (decreasing): q01 lies between the two smallest distinct values
    v2 = np.sort(np.concatenate([Q_HOME[1] + V[1] * np.arange(1, 11)] * 2))
    assert a["q01"][1] == pytest.approx(v2[0] + 0.19 * (v2[1] - v2[0]), abs=1e-9)
    assert a["mask"] == [True] * 7 + [False]  # gripper is not normalized
    assert stats["num_transitions"] == 20 and stats["num_trajectories"] == 2
    assert len(stats["proprio"]["q01"]) == 9
    # the model's Normalizer reads it
    from vla_adapter_ros.model.normalization import Normalizer

    norm = Normalizer.from_file(out / "meta/dataset_statistics.json")
    assert norm.action.dim == 8 and norm.proprio.dim == 9
    # compute_norm_stats on a tiny hand example
    s = compute_norm_stats(np.array([[0.0, 1], [1, 1], [2, 1], [3, 0]]), np.zeros((4, 1)), 1, 1)
    assert s["action"]["q01"][0] == pytest.approx(0.03) and s["action"]["q99"][0] == pytest.approx(2.97)


def test_corrupt_bag_isolated_and_layout(tmp_path, ts):
    good = [write_synthetic_bag(tmp_path / "bags", f"ep{i}", n_frames=8, q_of_frame=ramp(),
                                instruction=f"task {i % 2}", typestore=ts) for i in range(3)]
    bad = write_synthetic_bag(tmp_path / "bags", "bad", n_frames=8, q_of_frame=ramp(), typestore=ts)
    mcap = next(bad.glob("*.mcap"))
    mcap.write_bytes(b"not a bag, " * 100)  # corrupt (a truncated one is salvaged: test_mcap_salvage.py)
    missing = tmp_path / "bags" / "does_not_exist"
    out = tmp_path / "ds"
    rep = convert([good[0], bad, good[1], missing, good[2]], out, cfg(trim_idle=False))
    assert rep["converted"] == 3 and rep["failed"] == 2
    errs = {b["bag"]: b["error"] for b in rep["bags"] if b["status"] == "error"}
    assert str(bad) in errs[str(bad)] and "cannot read bag" in errs[str(bad)] and "\n" not in errs[str(bad)]
    assert "not an MCAP file" in errs[str(bad)]
    assert "no such bag" in errs[str(missing)]
    # LeRobot v3 layout
    for f in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
              "data/chunk-000/file-000.parquet", "meta/dataset_statistics.json", "meta/conversion_report.json"):
        assert (out / f).is_file(), f
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["robot_type"] == "franka"
    assert info["total_episodes"] == 3 and info["total_frames"] == 21 and info["total_tasks"] == 2
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["splits"] == {"train": "0:3"} and info["chunks_size"] == 1000
    f = info["features"]
    assert f["observation.images.primary"] == {"dtype": "image", "shape": [16, 16, 3],
                                                "names": ["height", "width", "channels"]}
    assert f["observation.state"]["shape"] == [9] and f["action"]["shape"] == [8]
    assert f["action"]["names"][-1] == "gripper"
    for k in ("timestamp", "camera_timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert k in f
    assert info["vla_adapter_ros"]["action_space"] == "joint_position"
    tab = pq.read_table(str(out / "data/chunk-000/file-000.parquet"))
    assert set(f) == set(tab.column_names)
    assert tab.column("index").to_pylist() == list(range(21))
    assert tab.column("episode_index").to_pylist() == [0] * 7 + [1] * 7 + [2] * 7
    assert tab.column("task_index").to_pylist() == [0] * 7 + [1] * 7 + [0] * 7
    img = tab.column("observation.images.primary")[0].as_py()
    assert img["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
    eps = pq.read_table(str(out / "meta/episodes/chunk-000/file-000.parquet")).to_pylist()
    assert [e["length"] for e in eps] == [7, 7, 7] and eps[1]["dataset_from_index"] == 7
    assert eps[1]["dataset_to_index"] == 14 and eps[1]["tasks"] == ["task 1"]
    tasks = pq.read_table(str(out / "meta/tasks.parquet"))
    assert tasks.column("task").to_pylist() == ["task 0", "task 1"]
    lr_stats = json.loads((out / "meta/stats.json").read_text())
    assert set(lr_stats) == set(f) and lr_stats["action"]["count"] == [21]  # every feature (issue 17)
    assert np.asarray(lr_stats["observation.images.primary"]["mean"]).shape == (3, 1, 1)
    # lazy image reads across row groups (16 rows each), also after pickling (DataLoader workers)
    import pickle

    ds = load_dataset(out, chunk_len=2)
    assert [int(ds[r]["images"][0][0, 0, 0]) for r in (0, 15, 16, 20)] == [0, 1, 2, 6]
    ds2 = pickle.loads(pickle.dumps(ds))
    assert int(ds2[20]["images"][1][0, 0, 0]) == 6 and ds2[20]["instruction"] == "task 0"
    report = json.loads((out / "meta/conversion_report.json").read_text())
    assert report["failed"] == 2
    # existing output is protected
    with pytest.raises(ConvertError, match="not empty"):
        convert(good, out, cfg())


def _stamp(ts, t_ns):
    return ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="")


def test_commanded_actions_and_gripper_topic(tmp_path, ts):
    t0, dt = 1_000_000_000_000, 100_000_000
    extra = []
    # ActionChunk commands published every 2 frames with 2 rows (10 Hz rows): target(frame f) = Q_HOME + 0.5 f V
    for k in range(0, 10, 2):
        rows = np.stack([Q_HOME + 0.5 * (k + r) * V for r in range(2)]).astype(np.float32)  # row r due at frame k+r
        msg = ts.types["vla_adapter_ros/msg/ActionChunk"](
            header=_stamp(ts, t0 + k * dt), names=[f"joint{i}" for i in range(1, 8)], action_space=0, horizon=2,
            action_dim=7, actions=rows.reshape(-1), dt=0.1, gripper=np.array([0.0, 0.0], np.float32),
            instruction="x", model_id="m", sequence=k, inference_ms=1.0)
        extra.append((t0 + k * dt + 1000, "/cmd", "vla_adapter_ros/msg/ActionChunk", msg))
    # gripper closes (Float64 closure 1.0) at frame 5.5
    Float64 = ts.types["std_msgs/msg/Float64"]
    extra.append((t0 + 55 * dt // 10, "/grip_cmd", "std_msgs/msg/Float64", Float64(data=1.0)))
    String = ts.types["std_msgs/msg/String"]
    extra.append((t0 + 5, "/instruction", "std_msgs/msg/String", String(data="Wipe the table")))
    bag = write_synthetic_bag(tmp_path / "bags", "cmd", n_frames=10, q_of_frame=ramp(), extra=extra,
                              encoding="bgr8", typestore=ts)
    ep = extract_episode(bag, cfg(trim_idle=False, command_topic="/cmd", labels="command", gripper_command_topic="/grip_cmd",
                                  instruction_topic="/instruction"), ts)
    assert ep.instruction == "Wipe the table"
    # sample k targets frame k+1: chunk sent at the even frame <= k+1, row (k+1 - that frame)
    for k in range(9):
        np.testing.assert_allclose(ep.action[k, :7], Q_HOME + 0.5 * (k + 1) * V, atol=1e-6)
    np.testing.assert_array_equal(ep.action[:, 7], [1.0] * 5 + [0.0] * 4)  # closed from frame 6 on
    assert int(ep.image("primary", 3)[0, 0, 0]) == 3 and int(ep.image("primary", 3)[0, 0, 2]) == 252  # bgr8 -> rgb
    # commands are aged at the target time: with max age 0.05 s every odd target frame (0.1 s old chunk) drops
    ep2 = extract_episode(bag, cfg(trim_idle=False, command_topic="/cmd", labels="command", max_age={"command": 0.05}), ts)
    assert ep2.report["dropped"]["command"] == 5 and ep2.action.shape[0] == 4
    np.testing.assert_allclose(ep2.action[:, 0], [Q_HOME[0] + 0.5 * f * V[0] for f in (2, 4, 6, 8)], atol=1e-6)
    assert [int(ep2.image("primary", k)[0, 0, 0]) for k in range(4)] == [1, 3, 5, 7]
    # Float64MultiArray joint commands (held; plain receive time)
    Arr = ts.types["std_msgs/msg/Float64MultiArray"]
    Layout = ts.types["std_msgs/msg/MultiArrayLayout"]
    extra = [(t0 + k * dt, "/cmd", "std_msgs/msg/Float64MultiArray",
              Arr(layout=Layout(dim=[], data_offset=0), data=(Q_HOME + 2 * k * V).astype(np.float64)))
             for k in range(8)]
    bag = write_synthetic_bag(tmp_path / "bags", "arr", n_frames=8, q_of_frame=ramp(), extra=extra,
                              encoding="jpeg", typestore=ts)
    ep = extract_episode(bag, cfg(trim_idle=False, command_topic="/cmd", labels="command", action_space="joint_delta"), ts)
    # command k is received 1 ms after frame k: it is the one in effect until frame k+1
    for k in range(7):
        np.testing.assert_allclose(ep.action[k, :7], (Q_HOME + 2 * k * V) - (Q_HOME + k * V), atol=1e-9)
    assert abs(int(ep.image("primary", 4)[0, 0, 0]) - 4) <= 3  # JPEG


def test_pose_topic_and_separate_gripper_states(tmp_path, ts):
    from vla_adapter_ros.control.kinematics import axis_angle_to_matrix

    t0, dt = 1_000_000_000_000, 100_000_000
    kin = FrankaKinematics()
    extra = []
    for k in range(6):
        tk = t0 + k * dt
        T = kin.fk(Q_HOME + V * k)
        T[:3, 3] += 0.1  # a pose source that differs from our FK, to see that it is used
        rv = matrix_to_axis_angle(T[:3, :3])
        ang = np.linalg.norm(rv)
        axis = rv / ang
        qx, qy, qz = axis * math.sin(ang / 2)
        Pose = ts.types["geometry_msgs/msg/Pose"]
        msg = ts.types["geometry_msgs/msg/PoseStamped"](header=_stamp(ts, tk), pose=Pose(
            position=ts.types["geometry_msgs/msg/Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
            orientation=ts.types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=math.cos(ang / 2))))
        extra.append((tk, "/pose", "geometry_msgs/msg/PoseStamped", msg))
        JS = ts.types["sensor_msgs/msg/JointState"]
        w = 0.03 if k < 3 else 0.005
        extra.append((tk, "/gripper/joint_states", "sensor_msgs/msg/JointState", JS(
            header=_stamp(ts, tk), name=["fr3_finger_joint1", "fr3_finger_joint2"], position=np.array([w, w]),
            velocity=np.zeros(0), effort=np.zeros(0))))
    bag = write_synthetic_bag(tmp_path / "bags", "pose", n_frames=6, q_of_frame=ramp(), extra=extra,
                              fingers_of_frame=lambda x: np.array([0.04, 0.04]), typestore=ts)
    ep = extract_episode(bag, cfg(trim_idle=False, action_space="eef_delta", proprio_layout="eef_axisangle_fingers",
                                  eef_pose_topic="/pose", gripper_state_topic="/gripper/joint_states"), ts)
    for k in range(5):
        a, b = kin.fk(Q_HOME + V * k), kin.fk(Q_HOME + V * (k + 1))
        np.testing.assert_allclose(ep.proprio[k, :3], a[:3, 3] + 0.1, atol=1e-9)
        np.testing.assert_allclose(axis_angle_to_matrix(ep.proprio[k, 3:6]), a[:3, :3], atol=1e-9)
        np.testing.assert_allclose(ep.action[k, :3], b[:3, 3] - a[:3, 3], atol=1e-9)
        np.testing.assert_allclose(ep.action[k, 3:6], matrix_to_axis_angle(b[:3, :3] @ a[:3, :3].T), atol=1e-9)
        np.testing.assert_allclose(ep.proprio[k, 6:], [0.03, 0.03] if k < 3 else [0.005, 0.005])
    # measured gripper: width at the next frame 0.01 m of 0.08 -> closed (value 0) from sample 2 on
    np.testing.assert_array_equal(ep.action[:, 6], [1, 1, 0, 0, 0])


def test_all_bags_bad_raises(tmp_path):
    with pytest.raises(ConvertError, match="no bag could be converted"):
        convert([tmp_path / "nope"], tmp_path / "ds", cfg())
    assert not (tmp_path / "ds").exists()  # nothing written: a retry needs no --overwrite


def test_output_appears_only_when_complete(tmp_path, ts, monkeypatch):
    """A failed or interrupted conversion leaves OUT as it was (absent, or the previous dataset) and no
    partial directory; a retry needs no --overwrite (issue 17)."""
    import vla_adapter_ros.data.convert as conv

    bags = [write_synthetic_bag(tmp_path / "bags", f"ep{i}", n_frames=8, q_of_frame=ramp(), typestore=ts)
            for i in range(2)]
    out = tmp_path / "ds"
    real_add = conv.DatasetWriter.add

    def interrupted(self, ep):
        raise KeyboardInterrupt

    monkeypatch.setattr(conv.DatasetWriter, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(bags, out, cfg())
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "bags"]
    monkeypatch.setattr(conv.DatasetWriter, "add", real_add)
    assert convert(bags, out, cfg())["converted"] == 2  # the retry, without --overwrite
    before = (out / "meta/info.json").read_text()
    # an existing dataset: refused without overwrite, kept intact when an overwrite fails
    with pytest.raises(ConvertError, match="not empty"):
        convert(bags, out, cfg())
    with pytest.raises(ConvertError, match="no bag could be converted"):
        convert([tmp_path / "nope"], out, cfg(), overwrite=True)
    assert (out / "meta/info.json").read_text() == before
    assert convert(bags[:1], out, cfg(), overwrite=True)["converted"] == 1
    assert json.loads((out / "meta/info.json").read_text())["total_episodes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bags", "ds"]


def test_cli(tmp_path, ts, capsys):
    bags = [write_synthetic_bag(tmp_path / "bags", f"ep{i}", n_frames=8, q_of_frame=ramp(), typestore=ts)
            for i in range(2)]
    p = argparse.ArgumentParser()
    add_arguments(p)
    cams = ["--cameras", "/camera/primary/image_raw", "/camera/wrist/image_raw"]  # the synthetic bags' topics
    args = p.parse_args([*map(str, bags), str(tmp_path / "ds"), *cams, "--action-space", "joint_delta",
                         "--proprio-layout", "joints", "--no-trim", "--max-age", "joints=0.02",
                         "--instruction", "Stack the blocks"])  # default: images stored at 224x224
    assert run(args) == 0
    ds = load_dataset(tmp_path / "ds", chunk_len=2)
    assert ds[0]["instruction"] == "Stack the blocks" and ds[0]["proprio"].shape == (7,)
    assert ds[0]["images"][0].shape == (224, 224, 3) and abs(int(ds[3]["images"][0][100, 100, 0]) - 3) <= 1
    np.testing.assert_allclose(ds[0]["actions"][0, :7], V, atol=1e-6)
    assert "2 episodes" in capsys.readouterr().out
    args = p.parse_args([str(bags[0]), str(tmp_path / "ds2"), "--max-age", "joints"])
    assert run(args) == 1
    # yaml config file; command-line options override it
    (tmp_path / "conv.yaml").write_text("action_space: eef_delta\nproprio_layout: eef_axisangle_fingers\n"
                                        "camera_names: [front, hand]\nmax_age: {joints: 0.02}\n")
    args = p.parse_args([str(bags[0]), str(tmp_path / "ds3"), *cams, "--config", str(tmp_path / "conv.yaml"),
                         "--image-size", "0", "0", "--no-gripper"])
    assert run(args) == 0
    info = json.loads((tmp_path / "ds3/meta/info.json").read_text())
    assert info["features"]["action"]["shape"] == [6] and "observation.images.hand" in info["features"]
    assert info["features"]["observation.images.front"]["shape"] == [16, 16, 3]
    assert info["vla_adapter_ros"]["gripper_index"] is None and info["vla_adapter_ros"]["dt"] == pytest.approx(0.1)
    args = p.parse_args([str(bags[0]), str(tmp_path / "ds4"), "--max-age", "bogus=1", "--action-space", "eef_delta"])
    assert run(args) == 1  # unknown max-age source


def _trajectory_commands(ts, q_of_frame, n_frames, lead_frames, t0=1_000_000_000_000, dt=100_000_000, per_frame=4):
    """JointTrajectory commands (header stamp 0, as the executor sends them) that lead the measured joints by
    ``lead_frames``, ``per_frame`` per camera frame: what a controller tracking with a lag records."""
    JT = ts.types["trajectory_msgs/msg/JointTrajectory"]
    JTP = ts.types["trajectory_msgs/msg/JointTrajectoryPoint"]
    Dur = ts.types["builtin_interfaces/msg/Duration"]
    out = []
    for j in range(n_frames * per_frame):
        x = j / per_frame
        point = JTP(positions=np.asarray(q_of_frame(x + lead_frames), float), velocities=np.zeros(0),
                    accelerations=np.zeros(0), effort=np.zeros(0), time_from_start=Dur(sec=0, nanosec=4_000_000))
        msg = JT(header=_stamp(ts, 0), joint_names=[f"joint{i}" for i in range(1, 8)], points=[point])
        out.append((t0 + int(x * dt) + 1000, "/cmd", "trajectory_msgs/msg/JointTrajectory", msg))
    return out


def test_eef_labels_are_measured_steps_that_sum_to_the_real_motion(tmp_path, ts):
    """Default labels: next measured pose minus measured pose; summed (translation) and composed (rotation)
    over an episode they give exactly its real motion, as the executor integrates them. Labels from a
    command that leads the measured state (the old `--command` default) overshoot."""
    from vla_adapter_ros.data.labels import eef_delta, integrate_eef_deltas

    def q_of(x):  # smooth: accelerates and brakes, every joint moves
        s = min(max(x / 14.0, 0.0), 1.0)
        return Q_HOME + (3 * s * s - 2 * s ** 3) * np.array([0.4, 0.3, -0.3, 0.4, 0.5, -0.4, 0.8])

    n = 16
    bag = write_synthetic_bag(tmp_path / "bags", "lead", n_frames=n, q_of_frame=q_of, typestore=ts,
                              extra=_trajectory_commands(ts, q_of, n, lead_frames=0.5))
    kin = FrankaKinematics()
    poses = [kin.fk(q_of(k)) for k in range(n)]
    base = dict(action_space="eef_delta", proprio_layout="joints_fingers", trim_idle=False, gripper=False)
    ep = extract_episode(bag, cfg(**base, command_topic="/cmd"), ts)  # the command topic is not used by default
    assert ep.report["labels"] == "measured" and ep.action.shape == (n - 1, 6)
    for k in range(n - 1):  # exact values: the step between the measured poses of frames k and k+1
        np.testing.assert_allclose(ep.action[k], eef_delta(poses[k], poses[k + 1]), atol=1e-9)
    assert np.linalg.norm(ep.action[7, :3]) > 5e-3  # it moves
    motion = poses[-1][:3, 3] - poses[0][:3, 3]
    ratio = float(np.dot(ep.action[:, :3].sum(axis=0), motion) / np.dot(motion, motion))
    assert ratio == pytest.approx(1.0, abs=1e-9)
    end = integrate_eef_deltas(poses[0], ep.action)
    np.testing.assert_allclose(end, poses[-1], atol=1e-9)  # rotations compose to the real one as well
    # labels from the leading command: the sum overshoots by about the lead (0.5 of a frame's motion per frame)
    cmd = extract_episode(bag, cfg(**base, command_topic="/cmd", labels="command"), ts)
    ratio_cmd = float(np.dot(cmd.action[:, :3].sum(axis=0), motion) / np.dot(motion, motion))
    assert cmd.report["labels"] == "command" and ratio_cmd > 1.03


def test_labels_option_is_validated():
    with pytest.raises(ConvertError, match="labels must be 'measured' or 'command'"):
        cfg(labels="next").validate()
    with pytest.raises(ConvertError, match="labels='command' needs command_topic"):
        cfg(labels="command").validate()


def test_sim_episode_record_is_kept_for_replay(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "sim", n_frames=6, q_of_frame=ramp(), typestore=ts)
    (bag / "sim_episode.json").write_text(json.dumps({"task": "lift_green", "seed": 1007, "start_jitter": 0.5}))
    plain = write_synthetic_bag(tmp_path / "bags", "plain", n_frames=6, q_of_frame=ramp(), typestore=ts)
    convert([bag, plain], tmp_path / "ds", cfg(trim_idle=False))
    rows = pq.read_table(str(tmp_path / "ds/meta/episodes/chunk-000/file-000.parquet")).to_pylist()
    assert json.loads(rows[0]["sim_episode"]) == {"task": "lift_green", "seed": 1007, "start_jitter": 0.5}
    assert rows[1]["sim_episode"] == ""


def test_compressed_image_decoding(ts):
    """sensor_msgs/CompressedImage (JPEG, as recorded at 2.8 MB/s instead of 56 MB/s raw; or PNG) decodes like
    Image; image_transport's format strings are accepted, depth images and corrupt data are clear errors."""
    import io

    from PIL import Image as PILImage

    from vla_adapter_ros.data.convert import decode_image
    from vla_adapter_ros.data.synthetic import compressed_msg

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(12, 10, 3)).astype(np.uint8)
    CI = ts.types["sensor_msgs/msg/CompressedImage"]
    hdr = _stamp(ts, 5)
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="PNG")
    png = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    for fmt in ("png", "rgb8; png compressed rgb8", "bgr8; png compressed bgr8"):
        msg = ts.deserialize_cdr(ts.serialize_cdr(CI(header=hdr, format=fmt, data=png), "sensor_msgs/msg/CompressedImage"),
                                 "sensor_msgs/msg/CompressedImage")
        np.testing.assert_array_equal(decode_image(msg), img)  # lossless, RGB as stored in the file
    flat = np.full((16, 16, 3), (200, 30, 90), dtype=np.uint8)
    jpg = compressed_msg(ts, 5, flat, quality=95)
    out = decode_image(jpg)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and np.abs(out.astype(int) - flat).max() <= 3
    jpg.format = "rgb8; jpeg compressed bgr8"
    assert np.abs(decode_image(jpg).astype(int) - flat).max() <= 3
    with pytest.raises(ConvertError, match="depth image"):
        decode_image(CI(header=hdr, format="16UC1; compressedDepth png", data=png))
    with pytest.raises(ConvertError, match="does not decode"):
        decode_image(CI(header=hdr, format="jpeg", data=np.frombuffer(b"not a jpeg", dtype=np.uint8)))
