"""Datasets that LeRobot itself trains on (issue 17 item 5): image statistics in LeRobot's layout (stats.json
and the per-episode stats of meta/episodes), ``timestamp == frame_index / fps``; loaded with LeRobot's own
``LeRobotDataset`` when ``lerobot`` is importable (skipped otherwise)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_adapter_ros.data.bag_io import make_typestore
from vla_adapter_ros.data.convert import (
    ConvertConfig,
    LeRobotFrames,
    channel_histogram,
    convert,
    image_stats,
    lerobot_stats,
    load_dataset,
)
from vla_adapter_ros.data.synthetic import Q_HOME, write_synthetic_bag

pq = pytest.importorskip("pyarrow.parquet")

QS = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_KEYS = {"min", "max", "mean", "std", "count", *QS}


@pytest.fixture(scope="module")
def ts():
    return make_typestore()


def cfg(**kw):
    base = dict(action_space="joint_position", proprio_layout="joints_fingers", image_size=None, trim_idle=False)
    base.update(kw)
    return ConvertConfig.from_dict(base)


def ramp(x):
    return Q_HOME + 0.01 * x


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ts):
    """Two episodes (10 Hz cameras); the second misses the joint states of frames 4-5, so frames are dropped
    and its camera time drifts from frame_index / fps."""
    tmp = tmp_path_factory.mktemp("lerobot")
    bags = [write_synthetic_bag(tmp / "bags", "ep0", n_frames=9, q_of_frame=ramp, typestore=ts),
            write_synthetic_bag(tmp / "bags", "ep1", n_frames=12, q_of_frame=ramp, skip_joint_frames=[4, 5],
                                typestore=ts)]
    out = tmp / "ds"
    convert(bags, out, cfg(max_age={"joints": 0.03}))
    return out


def test_image_stats_of_a_constant_image():
    img = np.empty((4, 6, 3), dtype=np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 0, 128, 255
    st = image_stats(channel_histogram(img) * 5, frames=5)
    assert set(st) == STAT_KEYS and st["count"] == [5]
    for k in STAT_KEYS - {"count"}:
        a = np.asarray(st[k])
        assert a.shape == (3, 1, 1), k
        if k != "std":
            np.testing.assert_allclose(a.reshape(3), [0.0, 128 / 255, 1.0], rtol=0, atol=1e-15)
    assert np.asarray(st["std"]).reshape(3).tolist() == [0.0, 0.0, 0.0]


def test_image_stats_equal_numpy_over_all_pixels():
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(7, 5, 4, 3)).astype(np.uint8)
    imgs[..., 2] //= 4  # channels differ
    st = image_stats(sum(channel_histogram(i) for i in imgs), frames=7)
    px = imgs.reshape(-1, 3).astype(np.float64) / 255.0
    for k, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
        np.testing.assert_allclose(np.asarray(st[k]).reshape(3), fn(px, axis=0), rtol=0, atol=1e-12)
    for k, q in QS.items():
        np.testing.assert_allclose(np.asarray(st[k]).reshape(3), np.quantile(px, q, axis=0), rtol=0, atol=1e-12)


def test_vector_stats_layout():
    x = np.arange(10, dtype=np.float64)
    st = lerobot_stats(x)  # a scalar feature: one-element lists, as LeRobot's
    assert set(st) == STAT_KEYS and st["count"] == [10] and st["mean"] == [4.5] and st["q50"] == [4.5]
    st = lerobot_stats(np.stack([x, 2 * x], axis=1))
    assert st["max"] == [9.0, 18.0] and st["q10"] == pytest.approx([0.9, 1.8])


def test_timestamp_is_frame_index_over_fps(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["fps"] == 10
    assert info["features"]["camera_timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    tab = pq.read_table(str(dataset / "data/chunk-000/file-000.parquet"))
    fi = tab.column("frame_index").to_numpy()
    ts_ = tab.column("timestamp").to_numpy()
    assert ts_.dtype == np.float32
    np.testing.assert_array_equal(ts_, (fi / info["fps"]).astype(np.float32))  # exactly
    ep = tab.column("episode_index").to_numpy()
    cam = tab.column("camera_timestamp").to_numpy()
    # episode 0: nothing dropped, the camera time agrees; episode 1: frames 4, 5 (and 3, whose successor is
    # gone) dropped, so from its 4th row on the camera time is 0.3 s ahead of frame_index / fps
    np.testing.assert_allclose(cam[ep == 0], 0.1 * np.arange((ep == 0).sum()), atol=1e-6)
    np.testing.assert_allclose(cam[ep == 1], [0.0, 0.1, 0.2, 0.6, 0.7, 0.8, 0.9, 1.0], atol=1e-6)
    assert fi[ep == 1].tolist() == list(range(8))
    # our own readers ignore the column and still work
    ds = load_dataset(dataset, chunk_len=2)
    assert len(ds) == 16 and ds[11]["frame_index"] == 3 and int(ds[11]["images"][0][0, 0, 0]) == 6


def _all_images(dataset):
    frames = LeRobotFrames(dataset)
    return frames, {c: np.stack([frames.image(c, r) for r in range(len(frames))]) for c in frames.cameras}


def _check_image_entry(entry, imgs):
    assert set(entry) == STAT_KEYS and entry["count"] == [len(imgs)]
    px = imgs.reshape(-1, 3).astype(np.float64) / 255.0
    for k, fn in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std)):
        a = np.asarray(entry[k])
        assert a.shape == (3, 1, 1)
        np.testing.assert_allclose(a.reshape(3), fn(px, axis=0), rtol=0, atol=1e-9)
    for k, q in QS.items():
        np.testing.assert_allclose(np.asarray(entry[k]).reshape(3), np.quantile(px, q, axis=0), rtol=0, atol=1e-9)


def test_stats_json_has_lerobot_image_statistics(dataset):
    stats = json.loads((dataset / "meta/stats.json").read_text())
    info = json.loads((dataset / "meta/info.json").read_text())
    assert set(stats) == set(info["features"])  # every feature, images included (lerobot-train needs them)
    frames, images = _all_images(dataset)
    for cam, imgs in images.items():
        _check_image_entry(stats[f"observation.images.{cam}"], imgs)
    # primary: channel 1 is 0 everywhere, channel 0 the frame index
    prim = stats["observation.images.primary"]
    assert np.asarray(prim["std"]).reshape(3)[1] == 0.0 and np.asarray(prim["max"]).reshape(3)[1] == 0.0
    a = stats["action"]
    assert set(a) == STAT_KEYS and a["count"] == [16] and len(a["mean"]) == 8
    np.testing.assert_allclose(a["mean"], frames.action.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["q90"], np.quantile(frames.state, 0.9, axis=0), atol=1e-6)
    assert stats["frame_index"]["max"] == [7.0] and stats["episode_index"]["count"] == [16]


def test_per_episode_stats_in_the_episode_table(dataset):
    """LeRobot v3.0 keeps each episode's statistics as ``stats/<feature>/<stat>`` columns of meta/episodes."""
    rows = pq.read_table(str(dataset / "meta/episodes/chunk-000/file-000.parquet")).to_pylist()
    frames, images = _all_images(dataset)
    info = json.loads((dataset / "meta/info.json").read_text())
    for row in rows:
        sl = slice(row["dataset_from_index"], row["dataset_to_index"])
        for feat in info["features"]:
            assert {k.split("/")[-1] for k in row if k.startswith(f"stats/{feat}/")} == STAT_KEYS, feat
        for cam, imgs in images.items():
            key = f"observation.images.{cam}"
            _check_image_entry({k: row[f"stats/{key}/{k}"] for k in STAT_KEYS}, imgs[sl])
        np.testing.assert_allclose(row["stats/action/min"], frames.action[sl].min(0), atol=1e-6)
        assert row["stats/timestamp/max"] == pytest.approx([(row["length"] - 1) / 10])
        assert row["stats/action/count"] == [row["length"]]


def _lerobot_stat_shapes_ok(stats, features):
    """LeRobot's own validation (aggregate_stats): arrays of >= 1 dimension, count (1,), image stats (3, 1, 1)."""
    for key, entry in stats.items():
        for k, v in entry.items():
            a = np.asarray(v)
            assert a.ndim >= 1, (key, k)
            if k == "count":
                assert a.shape == (1,), (key, k)
            elif features[key]["dtype"] in ("image", "video"):
                assert a.shape == (3, 1, 1), (key, k)


def test_stat_shapes_pass_lerobots_checks(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    _lerobot_stat_shapes_ok(json.loads((dataset / "meta/stats.json").read_text()), info["features"])


def test_loads_with_lerobot(dataset):
    lr = pytest.importorskip("lerobot.datasets.lerobot_dataset")
    ds = lr.LeRobotDataset("local/vla_adapter_ros_test", root=dataset,
                           delta_timestamps={"action": [0.0, 0.1, 0.2], "observation.images.primary": [-0.1, 0.0]})
    assert ds.num_episodes == 2 and ds.num_frames == len(ds) == 16 and ds.fps == 10
    for key in ds.meta.camera_keys:  # what lerobot-train's make_dataset reads (KeyError before issue 17)
        for k in ("mean", "std", "min", "max"):
            assert tuple(np.asarray(ds.meta.stats[key][k]).shape) == (3, 1, 1)
    item = ds[11]  # episode 1, frame 3
    assert tuple(item["action"].shape) == (3, 8) and tuple(item["observation.images.primary"].shape[-3:]) == (3, 16, 16)
    assert float(item["timestamp"]) == pytest.approx(0.3)
    assert item["task"] == "pick up the cube"
    # the image is the one our reader gives (channel-first float in [0, 1])
    ours = load_dataset(dataset, chunk_len=1)[11]["images"][0]
    np.testing.assert_allclose(item["observation.images.primary"][-1].numpy().transpose(1, 2, 0) * 255, ours, atol=0.5)


def test_info_dt_is_the_real_frame_period_not_the_rounded_fps(tmp_path, ts):
    # The simulation's cameras run at 0.104 s (fps rounds to 10): chunk rows must be played 0.104 s apart, as
    # recorded; a dt of 1 / 10 replayed a lift 4 % fast and it failed (test_collect's dataset replay).
    bags = [write_synthetic_bag(tmp_path / "bags", f"ep{k}", n_frames=10, camera_period_s=0.104, q_of_frame=ramp,
                                typestore=ts) for k in range(2)]
    convert(bags, tmp_path / "ds", cfg())
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["fps"] == 10
    assert info["vla_adapter_ros"]["dt"] == pytest.approx(0.104, abs=1e-6)
    # a fixed clock keeps its own period
    convert(bags, tmp_path / "ds_fixed", cfg(clock="fixed", fps=12.5))
    fixed = json.loads((tmp_path / "ds_fixed/meta/info.json").read_text())
    assert fixed["vla_adapter_ros"]["dt"] == pytest.approx(0.08)
