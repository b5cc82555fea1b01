"""Salvage of truncated MCAP recordings (issue 17 item 4): our own MCAP record scan
(`bag_io.scan_mcap` / `BagSource`) and `convert` on bags that rosbags cannot read."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from vla_adapter_ros.data.bag_io import (
    MCAP_MAGIC,
    BagReadError,
    BagSource,
    McapScan,
    make_typestore,
    read_raw_messages,
    scan_mcap,
)
from vla_adapter_ros.data.convert import ConvertConfig, ConvertError, convert, extract_episode, load_dataset
from vla_adapter_ros.data.synthetic import Q_HOME, joint_state_msg, write_synthetic_bag

rosbags = pytest.importorskip("rosbags")

CAM = "/camera/primary/image_raw"


@pytest.fixture(scope="module")
def ts():
    return make_typestore()


def cfg(**kw):
    base = dict(action_space="joint_position", proprio_layout="joints_fingers", image_size=None, trim_idle=False)
    base.update(kw)
    return ConvertConfig.from_dict(base)


def ramp(x):
    return Q_HOME + 0.01 * x


def rosbags_messages(bag):
    """(topic, msgtype, log time, raw) of a complete bag, read by rosbags (the reference)."""
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        return [(c.topic, c.msgtype, int(t), bytes(raw)) for c, t, raw in reader.messages()]


def record_ends(data: bytes, msgs):
    """Byte offset where each message's record ends in an uncompressed MCAP file, found by searching for
    its log/publish time and payload (rosbags writes both times equal): independent of our scanner."""
    ends = []
    for _topic, _mt, t, raw in msgs:
        pattern = struct.pack("<QQ", t, t) + raw
        pos = data.find(pattern)
        assert pos > 0 and data.find(pattern, pos + 1) == -1
        ends.append(pos + len(pattern))
    return ends


def truncate(bag: Path, cut: int) -> Path:
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:cut])
    (bag / "metadata.yaml").unlink()
    return mcap


# ---------------------------------------------------------------------------------------------
# the record scanner
# ---------------------------------------------------------------------------------------------
def test_scan_of_a_complete_bag_equals_rosbags(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path, "ep", n_frames=12, q_of_frame=ramp, typestore=ts)
    ref = rosbags_messages(bag)
    scan = McapScan()
    got = list(scan_mcap(next(bag.glob("*.mcap")), scan=scan))
    assert sorted(got) == sorted(ref) and len(got) == 12 * 4  # 2 cameras + 2 joint states per frame
    assert scan.complete and scan.stop == "" and scan.messages == 48
    assert scan.topics == {CAM: 12, "/camera/wrist/image_raw": 12, "/joint_states": 24}
    assert scan.types[CAM] == "sensor_msgs/msg/Image"
    assert scan.duration_s == pytest.approx(1.15)  # last joint state at 11.5 frames of 0.1 s
    # topic filter: the other topics are still counted
    scan = McapScan()
    only = list(scan_mcap(next(bag.glob("*.mcap")), topics=[CAM], scan=scan))
    assert len(only) == 12 and {m[0] for m in only} == {CAM} and scan.messages == 48
    # an intact bag is read by rosbags, not salvaged
    src = BagSource(bag)
    assert not src.salvaged and src.topics[CAM] == "sensor_msgs/msg/Image" and src.warning() == ""


@pytest.mark.parametrize("where", ["third", "two_thirds", "mid_record", "record_boundary"])
def test_truncated_scan_yields_exactly_the_complete_messages(tmp_path, ts, where):
    bag = write_synthetic_bag(tmp_path, "ep", n_frames=15, q_of_frame=ramp, typestore=ts)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    ref = rosbags_messages(bag)
    ends = record_ends(data, ref)
    cut = {"third": len(data) // 3, "two_thirds": 2 * len(data) // 3,
           "mid_record": ends[20] - len(ref[20][3]) // 2,  # inside message 20's payload
           "record_boundary": ends[20]}[where]
    expected = [m for m, end in zip(ref, ends) if end <= cut]
    assert 0 < len(expected) < len(ref)
    truncate(bag, cut)
    with pytest.raises(Exception):  # rosbags needs the summary
        rosbags_messages(bag)
    src = BagSource(bag)
    assert src.salvaged and src.topics is None  # topics known after the scan
    got = list(src.messages())
    assert sorted(got) == sorted(expected)
    assert not src.scan.complete and src.scan.messages == len(expected)
    assert src.topics == {m[0]: m[1] for m in expected}
    last = max(m[2] for m in expected) - min(m[2] for m in expected)
    assert src.warning() == (f"bag {bag} is truncated: salvaged {len(expected)} messages on "
                             f"{len({m[0] for m in expected})} topics up to t={last * 1e-9:.3f} s; the rest is lost")
    # every salvaged message deserializes (complete CDR)
    for topic, mt, _t, raw in got:
        ts.deserialize_cdr(raw, mt)
    assert sorted(read_raw_messages(bag)) == sorted(expected)


def _write_rosbags_bag(path: Path, ts, msgs, zstd: bool):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    if zstd:
        w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    conns = {}
    with w:
        for topic, mt, t, raw in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, mt, typestore=ts)
            w.write(conns[topic], t, raw)


def _joint_messages(ts, n, noise=False):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        t = 10**12 + k * 1_000_000
        q = rng.normal(size=7) if noise else ramp(k)  # noise: does not compress
        out.append(("/joint_states", "sensor_msgs/msg/JointState", t,
                    bytes(ts.serialize_cdr(joint_state_msg(ts, t, q), "sensor_msgs/msg/JointState"))))
    return out


def test_zstd_chunks_complete_and_cut(tmp_path, ts):
    msgs = _joint_messages(ts, 6000, noise=True)  # ~1.5 MB: two chunks of rosbags' 1 MiB
    _write_rosbags_bag(tmp_path / "z", ts, msgs, zstd=True)
    mcap = next((tmp_path / "z").glob("*.mcap"))
    data = mcap.read_bytes()
    assert b"zstd" in data[:200]
    got = list(scan_mcap(mcap))
    assert got == msgs  # file order = write order
    (tmp_path / "z" / "metadata.yaml").unlink()
    mcap.write_bytes(data[: int(len(data) * 0.9)])  # inside the second (last) chunk
    src = BagSource(tmp_path / "z")
    got = list(src.messages())
    # the first chunk whole, then whatever of the cut one decompresses: always a prefix of complete messages
    assert 4000 < len(got) < len(msgs) and got == msgs[: len(got)]
    assert src.salvaged and not src.scan.complete


# a hand-written MCAP file: top-level (unchunked) messages, then an lz4 chunk -- what other writers produce
def _rec(op: int, body: bytes) -> bytes:
    return bytes([op]) + struct.pack("<Q", len(body)) + body


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<I", len(b)) + b


def _handmade_mcap(ts, n_top=3, n_chunk=5):
    import lz4.frame

    msgs = _joint_messages(ts, n_top + n_chunk)
    schema = _rec(0x03, struct.pack("<H", 1) + _s("sensor_msgs/msg/JointState") + _s("ros2msg") + _s(""))
    channel = _rec(0x04, struct.pack("<HH", 7, 1) + _s("/joint_states") + _s("cdr") + struct.pack("<I", 0))

    def message(k):
        t, raw = msgs[k][2], msgs[k][3]
        return _rec(0x05, struct.pack("<HIQQ", 7, k, t, t) + raw)

    out = MCAP_MAGIC + _rec(0x01, _s("ros2") + _s("test")) + schema + channel
    top_ends = []
    for k in range(n_top):
        out += message(k)
        top_ends.append(len(out))
    inner = b"".join(message(k) for k in range(n_top, n_top + n_chunk))
    comp = lz4.frame.compress(inner)
    body = (struct.pack("<QQQI", msgs[n_top][2], msgs[-1][2], len(inner), zlib.crc32(inner)) + _s("lz4")
            + struct.pack("<Q", len(comp)) + comp)
    chunk_at = len(out)
    out += _rec(0x06, body)
    out += _rec(0x0F, struct.pack("<I", 0)) + _rec(0x02, bytes(20)) + MCAP_MAGIC
    return out, msgs, top_ends, chunk_at


def test_lz4_chunk_and_unchunked_messages(tmp_path, ts):
    data, msgs, top_ends, chunk_at = _handmade_mcap(ts)
    f = tmp_path / "hand.mcap"
    f.write_bytes(data)
    scan = McapScan()
    assert list(scan_mcap(f, scan=scan)) == msgs and scan.complete
    f.write_bytes(data[: top_ends[1] - 3])  # inside the second top-level message
    scan = McapScan()
    assert list(scan_mcap(f, scan=scan)) == msgs[:1] and not scan.complete
    assert "cut at byte" in scan.stop
    f.write_bytes(data[:chunk_at + 5])  # in the chunk's record header: the top-level messages are kept
    assert list(scan_mcap(f)) == msgs[:3]
    # a corrupt CRC in a complete chunk stops the scan before it
    bad = bytearray(data)
    crc_at = chunk_at + 9 + 24
    bad[crc_at:crc_at + 4] = b"\0\0\0\1"
    f.write_bytes(bytes(bad))
    scan = McapScan()
    assert list(scan_mcap(f, scan=scan)) == msgs[:3] and "CRC" in scan.stop


def test_garbage_zero_tail_and_non_mcap(tmp_path, ts):
    data, msgs, top_ends, _ = _handmade_mcap(ts)
    f = tmp_path / "zeros.mcap"
    f.write_bytes(data[: top_ends[-1]] + bytes(4096))  # a zero-filled tail (crash on some file systems)
    scan = McapScan()
    assert list(scan_mcap(f, scan=scan)) == msgs[:3] and "opcode 0" in scan.stop
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not a bag\n" * 10)
    with pytest.raises(BagReadError, match="not an MCAP file"):
        list(scan_mcap(junk))
    with pytest.raises(BagReadError) as e:
        BagSource(junk)
    assert "\n" not in str(e.value) and "not an MCAP file" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BagReadError, match="cannot read bag"):
        BagSource(empty)
    with pytest.raises(BagReadError, match="no such bag"):
        BagSource(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# convert on salvaged bags
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["third", "two_thirds", "mid_record"])
def test_convert_salvages_a_truncated_bag(tmp_path, ts, where):
    n = 30
    bag = write_synthetic_bag(tmp_path / "bags", "ep", n_frames=n, q_of_frame=ramp, typestore=ts)
    data = next(bag.glob("*.mcap")).read_bytes()
    ref = rosbags_messages(bag)
    ends = record_ends(data, ref)
    cam_idx = [i for i, m in enumerate(ref) if m[0] == CAM]
    cut = {"third": len(data) // 3, "two_thirds": 2 * len(data) // 3,
           "mid_record": ends[cam_idx[17]] - 40}[where]  # inside primary camera frame 17
    complete = [m for m, end in zip(ref, ends) if end <= cut]
    n_cam = sum(m[0] == CAM for m in complete)
    truncate(bag, cut)  # and no metadata.yaml: what kill -9 of the recorder leaves
    lines = []
    rep = convert([bag], tmp_path / "ds", cfg(), log=lines.append)
    b = rep["bags"][0]
    assert rep["converted"] == 1 and b["status"] == "ok"
    # camera frames salvaged = complete camera messages before the cut (computed from the intact bag)
    assert b["ticks"] == n_cam and 5 <= n_cam < n
    assert b["salvage"]["messages"] == len(complete) and not b["salvage"]["complete"]
    assert b["salvage"]["topics"] == {t: sum(m[0] == t for m in complete) for t in {m[0] for m in complete}}
    warn = [x for x in lines if x.startswith("WARN")]
    assert len(warn) == 1 and f"bag {bag} is truncated: salvaged {len(complete)} messages on 3 topics" in warn[0]
    assert warn[0].endswith("; the rest is lost") and rep["warnings"] == [warn[0][len("WARN  "):]]
    # the dataset holds every synchronized frame of the salvaged part, in order
    ds = load_dataset(tmp_path / "ds", chunk_len=1)
    assert len(ds) == b["frames"] == b["synced_frames"] - 1 >= n_cam - 2
    assert [int(ds[k]["images"][0][0, 0, 0]) for k in range(len(ds))] == list(range(len(ds)))
    assert ds[0]["instruction"] == "pick up the cube"  # from the episode.yaml sidecar
    report = json.loads((tmp_path / "ds/meta/conversion_report.json").read_text())
    assert report["bags"][0]["salvage"]["messages"] == len(complete)


def test_convert_reads_an_intact_mcap_without_metadata(tmp_path, ts):
    bag = write_synthetic_bag(tmp_path / "bags", "ep", n_frames=8, q_of_frame=ramp, typestore=ts)
    (bag / "metadata.yaml").unlink()
    lines = []
    rep = convert([bag], tmp_path / "ds", cfg(), log=lines.append)
    assert rep["converted"] == 1 and rep["warnings"] == [] and "salvage" not in rep["bags"][0]
    assert rep["bags"][0]["frames"] == 7 and not any(x.startswith("WARN") for x in lines)
    # the .mcap file itself is a bag too (no sidecar next to it is read: instruction given)
    ep = extract_episode(next(bag.glob("*.mcap")), cfg(instruction="stack"), ts)
    assert ep.report["frames"] == 7 and ep.instruction == "stack"


def test_convert_garbage_is_a_one_line_error(tmp_path, ts, capsys):
    import argparse

    from vla_adapter_ros.data.convert import add_arguments, run

    bag = write_synthetic_bag(tmp_path / "bags", "ep", n_frames=8, q_of_frame=ramp, typestore=ts)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(os.urandom(5000))
    (bag / "metadata.yaml").unlink()
    with pytest.raises(ConvertError) as e:
        convert([bag], tmp_path / "ds", cfg())
    assert "\n" not in str(e.value) and "not an MCAP file" in str(e.value) and str(bag) in str(e.value)
    p = add_arguments(argparse.ArgumentParser())
    assert run(p.parse_args([str(bag), str(tmp_path / "ds"), "--cameras", CAM])) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an MCAP file" in err[0]
    # cut before the first camera frame: nothing to convert, the error says what was salvaged
    good = write_synthetic_bag(tmp_path / "bags", "short", n_frames=8, q_of_frame=ramp, typestore=ts)
    truncate(good, 200)
    with pytest.raises(ConvertError, match=r"not in the bag .*is truncated: salvaged 0 messages"):
        extract_episode(good, cfg(), ts)


_RECORDER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from vla_adapter_ros.data.bag_io import BagRecorder, EpisodeMetadata, make_typestore
    from vla_adapter_ros.data.synthetic import frame_image, image_msg, joint_state_msg, Q_HOME
    ts = make_typestore()
    rec = BagRecorder(sys.argv[1], typestore=ts, flush_period_s=0.5)
    rec.start(EpisodeMetadata(instruction="wipe the table", episode_name="crash"), now_ns=10**12)
    t0, n = 10**12, int(sys.argv[2])
    for k in range(n):
        t = t0 + k * 100_000_000
        for topic in ("/camera/primary/image_raw", "/camera/wrist/image_raw"):
            raw = ts.serialize_cdr(image_msg(ts, t, frame_image(k)), "sensor_msgs/msg/Image")
            rec.write(topic, "sensor_msgs/msg/Image", raw, t)
        for j in range(2):
            tj = t + j * 50_000_000
            q = Q_HOME + 0.01 * (k + j / 2)
            raw = ts.serialize_cdr(joint_state_msg(ts, tj, q, np.array([0.04, 0.04])), "sensor_msgs/msg/JointState")
            rec.write("/joint_states", "sensor_msgs/msg/JointState", raw, tj)
    sys.stdout.write("written\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # the recorder dies mid-episode: no stop(), no metadata.yaml
""")


def test_kill_9_mid_episode_is_salvaged(tmp_path):
    """A recorder killed mid-episode leaves .partial/<episode>/ with its .mcap (no summary) and episode.yaml;
    everything up to its last chunk flush (every flush_period_s of receive time) converts."""
    n = 37
    root = tmp_path / "bags"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run([sys.executable, "-c", _RECORDER, str(root), str(n)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == -signal.SIGKILL and p.stdout == "written\n", p.stderr
    bag = root / ".partial" / "crash"
    assert sorted(x.name for x in bag.iterdir()) == ["crash.mcap", "episode.yaml"]
    # the flush rule over the receive times: a chunk is written by the message 0.5 s after the last flush
    times = []
    for k in range(n):
        t = 10**12 + k * 100_000_000
        times += [t, t, t, t + 50_000_000]
    last_flush, flushed = times[0], 0
    for i, t in enumerate(times):
        if t - last_flush >= 500_000_000:
            last_flush, flushed = t, i + 1
    lines = []
    rep = convert([bag], tmp_path / "ds", cfg(), log=lines.append)
    b = rep["bags"][0]
    assert b["salvage"]["messages"] == flushed and 0.9 * len(times) < flushed < len(times)
    assert b["ticks"] == (flushed + 3) // 4 and b["instruction"] == "wipe the table"
    assert any("is truncated: salvaged" in x for x in lines)
