"""Recording core: rosbag2 MCAP bags from raw CDR messages (no ROS install needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from vla_adapter_ros.data.bag_io import (
    EPISODE_KEY,
    BagRecorder,
    EpisodeMetadata,
    RecorderError,
    check_fresh,
    make_typestore,
    read_episode_metadata,
)
from vla_adapter_ros.data.synthetic import image_msg, joint_state_msg

rosbags = pytest.importorskip("rosbags")


@pytest.fixture(scope="module")
def ts():
    return make_typestore()


def _chunk(ts, t_ns):
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    return ts.types["vla_adapter_ros/msg/ActionChunk"](
        header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="base"),
        names=[f"joint{i}" for i in range(1, 8)], action_space=0, horizon=2, action_dim=7,
        actions=np.arange(14, dtype=np.float32) * 0.1, dt=0.05, gripper=np.array([0.0, 1.0], dtype=np.float32),
        instruction="pick up the cube", model_id="tiny", sequence=3, inference_ms=12.5)


def _messages(ts):
    t0 = 5 * 10**9
    img = (np.arange(4 * 5 * 3) % 256).astype(np.uint8).reshape(4, 5, 3)
    out = []
    for k in range(3):
        t = t0 + k * 50_000_000
        out.append(("/cam", "sensor_msgs/msg/Image", ts.serialize_cdr(image_msg(ts, t, img + k), "sensor_msgs/msg/Image"), t))
        out.append(("/joint_states", "sensor_msgs/msg/JointState",
                    ts.serialize_cdr(joint_state_msg(ts, t, np.full(7, 0.1 * k), np.array([0.04, 0.04])),
                                     "sensor_msgs/msg/JointState"), t + 1))
        out.append(("/chunk", "vla_adapter_ros/msg/ActionChunk",
                    ts.serialize_cdr(_chunk(ts, t), "vla_adapter_ros/msg/ActionChunk"), t + 2))
    return out


def test_round_trip_identical(tmp_path, ts):
    from rosbags.rosbag2 import Reader

    rec = BagRecorder(tmp_path, typestore=ts)
    msgs = _messages(ts)
    final = rec.start(EpisodeMetadata(instruction="Pick up the cube", episode_name="ep_a",
                                      config={"fps": 20, "cameras": ["/cam"]}, operator="me"))
    assert rec.recording and final == tmp_path / "ep_a"
    for topic, mt, raw, t in msgs:
        assert rec.write(topic, mt, raw, t)
    assert rec.counts == {"/cam": 3, "/joint_states": 3, "/chunk": 3}
    out = rec.stop(success=True, extra={"note": "ok"})
    assert out == final and out.is_dir() and not rec.recording
    assert list(out.glob("*.mcap")), "MCAP storage expected"
    assert not (tmp_path / ".partial" / "ep_a").exists()

    with Reader(out) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/cam": "sensor_msgs/msg/Image", "/joint_states": "sensor_msgs/msg/JointState",
            "/chunk": "vla_adapter_ros/msg/ActionChunk"}
        got = [(c.topic, c.msgtype, bytes(raw), t) for c, t, raw in reader.messages()]
    assert sorted(got, key=lambda m: m[3]) == sorted(msgs, key=lambda m: m[3])
    # deserialized content
    chunk = ts.deserialize_cdr(got[2][2], "vla_adapter_ros/msg/ActionChunk")
    assert chunk.instruction == "pick up the cube" and chunk.sequence == 3
    np.testing.assert_array_equal(chunk.actions, np.arange(14, dtype=np.float32) * 0.1)
    img = ts.deserialize_cdr(got[0][2], "sensor_msgs/msg/Image")
    assert (img.height, img.width, img.encoding) == (4, 5, "rgb8")
    js = ts.deserialize_cdr(got[1][2], "sensor_msgs/msg/JointState")
    assert list(js.name)[:1] == ["fr3_joint1"] and len(js.position) == 9

    # metadata: rosbag2 custom_data and the sidecar
    meta = read_episode_metadata(out)
    assert meta["instruction"] == "Pick up the cube" and meta["config"] == {"fps": 20, "cameras": ["/cam"]}
    assert meta["success"] is True and meta["extra"] == {"note": "ok"} and meta["operator"] == "me"
    assert meta["message_counts"] == {"/cam": 3, "/joint_states": 3, "/chunk": 3}
    side = yaml.safe_load((out / "episode.yaml").read_text())
    assert side["instruction"] == "Pick up the cube"
    raw_meta = yaml.safe_load((out / "metadata.yaml").read_text())
    custom = raw_meta["rosbag2_bagfile_information"]["custom_data"][EPISODE_KEY]
    assert json.loads(custom)["episode_name"] == "ep_a"


def test_discard_deletes_bag(tmp_path, ts):
    rec = BagRecorder(tmp_path, typestore=ts)
    rec.start({"instruction": "x", "episode_name": "ep_b"})
    for topic, mt, raw, t in _messages(ts):
        rec.write(topic, mt, raw, t)
    assert rec.discard() == tmp_path / "ep_b"
    assert not (tmp_path / "ep_b").exists() and not (tmp_path / ".partial" / "ep_b").exists()
    assert rec.discard() is None
    # discard of the last stopped episode
    rec.start({"instruction": "x", "episode_name": "ep_c"})
    rec.stop()
    assert (tmp_path / "ep_c").is_dir()
    assert rec.discard_last() == tmp_path / "ep_c" and not (tmp_path / "ep_c").exists()


def test_episode_control_errors(tmp_path, ts):
    rec = BagRecorder(tmp_path, topics={"/cam": "sensor_msgs/Image"}, typestore=ts)
    topic, mt, raw, t = _messages(ts)[0]
    assert rec.write(topic, mt, raw, t) is False  # not recording: only noted for the freshness gate
    assert rec.last_seen["/cam"] == pytest.approx(t * 1e-9)
    with pytest.raises(RecorderError, match="instruction"):
        rec.start({"instruction": "  "})
    with pytest.raises(RecorderError, match="invalid episode name"):
        rec.start({"instruction": "a", "episode_name": "../evil"})
    rec.start({"instruction": "a", "episode_name": "ep"})
    with pytest.raises(RecorderError, match="already recording"):
        rec.start({"instruction": "a", "episode_name": "ep2"})
    assert rec.write("/other", mt, raw, t) is False  # not in the configured topic list
    rec.stop()
    with pytest.raises(RecorderError, match="not recording"):
        rec.stop()
    with pytest.raises(RecorderError, match="already exists"):
        rec.start({"instruction": "a", "episode_name": "ep"})


def test_unknown_type_rejected(tmp_path, ts):
    rec = BagRecorder(tmp_path, typestore=ts)
    rec.start({"instruction": "a", "episode_name": "ep"})
    with pytest.raises(RecorderError, match="not known"):
        rec.write("/x", "my_pkg/msg/Nope", b"\x00\x01\x00\x00", 1)
    rec.discard()


def test_freshness_gate():
    last = {"/cam": 10.0, "/joint_states": 9.95, "/wrist": 8.0, "/never": None}
    assert check_fresh(last, now=10.05, max_age=0.2) == ["/never", "/wrist"]
    assert check_fresh(last, now=10.05, max_age={"/cam": 0.01, "/joint_states": 1, "/wrist": 5, "/never": 1}) == [
        "/cam", "/never"]
    assert check_fresh(last, now=10.05, max_age=0.2, required=["/cam", "/missing"]) == ["/missing"]
    assert check_fresh({}, now=0.0, max_age=1.0) == []


def test_crash_mid_episode_leaves_a_readable_partial_bag(tmp_path, ts):
    """episode.yaml is written at start and the pending MCAP chunk every flush_period_s of receive time, so
    a recorder that dies before stop() leaves its instruction and all but the last moments (issue 17)."""
    from vla_adapter_ros.data.bag_io import BagReadError, BagSource

    rec = BagRecorder(tmp_path, typestore=ts, flush_period_s=0.1)
    rec.start(EpisodeMetadata(instruction="Pick up the cube", episode_name="ep_k"))
    partial = tmp_path / ".partial" / "ep_k"
    assert read_episode_metadata(partial)["instruction"] == "Pick up the cube"
    msgs = _messages(ts)  # 9 messages at 5.0, 5.05, 5.1 s (+ 0, 1, 2 ns)
    for topic, mt, raw, t in msgs:
        rec.write(topic, mt, raw, t)
    # the first write starts the clock; the message at 5.1 s (0.1 s later) flushes everything up to it
    src = BagSource(partial)  # what a crash now would leave: no metadata.yaml, no summary
    got = list(src.messages())
    assert src.salvaged and not src.scan.complete and len(got) == 7
    assert [(m[0], m[2]) for m in got] == [(m[0], m[3]) for m in msgs[:7]]
    out = rec.stop(success=True)
    assert len(list(BagSource(out).messages())) == 9 and not BagSource(out).salvaged
    assert read_episode_metadata(out)["success"] is True
    # flush_period_s=0: rosbags' own chunking (1 MiB), nothing on disk yet for a small episode
    rec = BagRecorder(tmp_path, typestore=ts, flush_period_s=0)
    rec.start(EpisodeMetadata(instruction="x", episode_name="ep_l"))
    for topic, mt, raw, t in msgs:
        rec.write(topic, mt, raw, t)
    mcap = tmp_path / ".partial" / "ep_l" / "ep_l.mcap"
    assert mcap.stat().st_size == 0  # rosbags' file buffer: not even the magic yet
    with pytest.raises(BagReadError, match="has 0 bytes .*before anything reached the disk"):
        BagSource(mcap.parent)
    rec.discard()
    # with flushing, the header is on disk from the start: an episode cut before its first flush is empty
    rec = BagRecorder(tmp_path, typestore=ts, topics={"/cam": "sensor_msgs/msg/Image"}, flush_period_s=1.0)
    rec.start(EpisodeMetadata(instruction="x", episode_name="ep_m"))
    rec.write(*[(m[0], m[1], m[2], m[3]) for m in msgs][0])
    src = BagSource(tmp_path / ".partial" / "ep_m")
    assert list(src.messages()) == [] and src.scan.messages == 0 and not src.scan.complete
    out = rec.stop()
    assert [m[0] for m in BagSource(out).messages()] == ["/cam"]
