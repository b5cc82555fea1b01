"""The demo's shareable media (vla_adapter_ros/media.py): labelled MP4 / GIF videos and the joint plot.
No ROS, no simulation: synthetic frames and joint traces."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vla_adapter_ros import media

N_FRAMES = 30  # 3 s at the simulation's 10 Hz camera rate
HOLD = round(media.HOLD_LAST_S * 10) - 1


def _episode(n: int = N_FRAMES):
    ramp = np.linspace(40, 220, 224, dtype=np.uint8)
    view = []
    for i in range(n):  # a gradient with a moving square, like a scene more than noise (GIF encodes it fast)
        img = np.stack([np.tile(ramp, (224, 1)), np.tile(ramp[:, None], (1, 224)), np.full((224, 224), 120)], 2)
        img[100:140, 5 * i:5 * i + 40] = (200, 30, 30)
        view.append(img.astype(np.uint8))
    wrist = [np.full((224, 224, 3), 90, np.uint8) for _ in range(n)]
    stamps = {"agentview": [20.0 + 0.1 * i for i in range(n)], "wrist": [20.0 + 0.1 * i for i in range(n)]}
    return {"agentview": view, "wrist": wrist}, stamps


LABEL = media.EpisodeLabel("lift the green cube", "lift_green  seed 1000  episode 0", 8.0, True)


def _band(frame: np.ndarray, cameras_h: int = 448) -> np.ndarray:
    """The text band above the cameras (rows above the first camera pixel row)."""
    return frame[: frame.shape[0] - cameras_h]


def _colour_pixels(img: np.ndarray, rgb, tol: int = 40) -> int:
    return int((np.abs(img.astype(int) - np.array(rgb)).max(axis=2) < tol).sum())


def test_label_frame_puts_the_text_band_over_the_two_cameras():
    view = np.zeros((224, 224, 3), np.uint8)
    view[:, :, 0] = 200
    wrist = np.zeros((224, 224, 3), np.uint8)
    wrist[:, :, 2] = 200
    frame = media.label_frame(view, wrist, LABEL, 1.23)
    h, w, _ = frame.shape
    assert w == 896 and h % 16 == 0 and w % 16 == 0  # 2 x 224 scaled to >= 640, H.264 macro blocks
    band = _band(frame)
    assert band.shape[0] >= 36
    assert _colour_pixels(band, media.TEXT_RGB, 60) > 200  # instruction and clock drawn
    assert _colour_pixels(band, media.SUCCESS_RGB) > 30  # the verdict, in green
    cams = frame[-448:]
    assert (cams[200:, 200:400, 0] == 200).all() and (cams[200:, 500:, 2] == 200).all()  # agentview left, wrist right
    failed = media.label_frame(view, wrist, media.EpisodeLabel("x", limit_s=5.0, success=False), 1.0)
    assert _colour_pixels(_band(failed), media.FAILURE_RGB) > 30
    assert _colour_pixels(_band(failed), media.SUCCESS_RGB) == 0
    later = media.label_frame(view, wrist, LABEL, 7.5)
    assert not np.array_equal(_band(later), band)  # the clock moved


def test_mp4_decodes_with_every_frame_at_the_right_size_and_a_labelled_band(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    assert media.resolve_format("mp4") == ("mp4", "")
    frames, stamps = _episode()
    path, note = media.write_episode_video(tmp_path / "episode_00", frames, stamps, LABEL, "mp4")
    assert note == "" and path == tmp_path / "episode_00.mp4" and path.stat().st_size > 10_000
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    assert (w, h) == (896, 528) and meta["fps"] == pytest.approx(10.0)
    decoded = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    assert len(decoded) == N_FRAMES + HOLD  # every camera frame, then the verdict held 1 s
    first = decoded[0]
    band = _band(first)
    assert band.std() > 20  # text on the dark band, not a blank strip
    assert _colour_pixels(band, media.TEXT_RGB, 60) > 150
    assert _colour_pixels(band, media.SUCCESS_RGB, 60) > 20
    assert np.abs(first[-448:, :448].astype(int) - np.kron(frames["agentview"][0], np.ones((2, 2, 1)))).mean() < 40


def test_gif_on_request_and_when_the_mp4_writer_is_missing_or_fails(tmp_path, monkeypatch):
    from PIL import Image

    frames, stamps = _episode(12)
    path, note = media.write_episode_video(tmp_path / "a", frames, stamps, LABEL, "gif")
    assert path.suffix == ".gif" and note == ""
    with Image.open(path) as gif:
        assert gif.n_frames == 12 and gif.size == (448, 272)  # Pillow merges the held frames into one
        band = _band(np.asarray(gif.convert("RGB")), 224)
        assert band.std() > 20 and _colour_pixels(band, media.SUCCESS_RGB, 60) > 10  # labelled at this size too
        gif.seek(11)
        assert gif.info["duration"] == pytest.approx(1000 * media.HOLD_LAST_S, abs=20)
    assert media.write_episode_video(tmp_path / "b", frames, stamps, LABEL, "none") == (None, "")
    assert media.write_episode_video(tmp_path / "c", {"agentview": [], "wrist": []}, None, LABEL, "mp4") == (None, "")

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # not installed
    fmt, note = media.resolve_format("mp4")
    assert fmt == "gif" and "MP4 writer unavailable" in note and "imageio-ffmpeg" in note and "\n" not in note
    monkeypatch.undo()

    def broken(*_args):
        raise BrokenPipeError("ffmpeg died")

    monkeypatch.setattr(media, "write_mp4", broken)
    path, note = media.write_episode_video(tmp_path / "d", frames, stamps, LABEL, "mp4")
    assert path == tmp_path / "d.gif" and path.is_file() and "ffmpeg died" in note
    assert not (tmp_path / "d.mp4").exists()
    with pytest.raises(ValueError, match="mp4, gif, none"):
        media.resolve_format("avi")


def test_frames_pair_by_simulation_time():
    frames = {"agentview": [np.full((2, 2, 3), i, np.uint8) for i in range(3)],
              "wrist": [np.full((2, 2, 3), 10 + i, np.uint8) for i in range(4)]}
    stamps = {"agentview": [1.0, 1.1, 1.2], "wrist": [0.95, 1.05, 1.19, 1.3]}
    pairs = media.pair_frames(frames, stamps)
    assert [round(t, 3) for t, _, _ in pairs] == [0.0, 0.1, 0.2]
    assert [int(w[0, 0, 0]) for _, _, w in pairs] == [10, 11, 12]  # 1.0 is nearer 0.95 than 1.05 (tie: first)
    assert media.frame_rate([0.0, 0.1, 0.2]) == pytest.approx(10.0)
    assert media.frame_rate([1.0]) == 10.0
    assert len(media.pair_frames(frames, None)) == 3  # no stamps: by index


def _traces(near_limit: bool = False):
    t = 5.0 + 0.02 * np.arange(200)
    base = np.array([0.0, -0.78, 0.0, -2.36, 0.0, 1.57, 0.78])
    measured = [(ti, base + 0.1 * np.sin(ti)) for ti in t]
    if near_limit:  # joint 4 rises to 0.1 rad below its upper limit (-0.15)
        measured = [(ti, np.r_[q[:3], -0.25 - 0.5 * (1 - i / 199), q[4:]]) for i, (ti, q) in enumerate(measured)]
    commanded = [(ti, q + 0.01) for ti, q in measured[::4]]
    gripper_measured = [(ti, 0.08 if ti < 7 else 0.041) for ti in t]
    gripper_commanded = [(ti, 0.08 if ti < 6.8 else 0.0) for ti in t[::5]]
    return measured, commanded, gripper_measured, gripper_commanded


def test_joint_figure_has_units_limits_commanded_measured_gripper_and_a_legend():
    limits = media.JointLimits.load("fr3_sim")
    assert limits is not None and limits.q_max[3] == pytest.approx(-0.1518)
    measured, commanded, g_meas, g_cmd = _traces(near_limit=True)
    names = [f"fr3_joint{j}" for j in range(1, 8)]
    fig = media.joint_figure(measured, commanded, names, "lift_green seed 1: success", limits, g_meas, g_cmd)
    axes = fig.axes
    assert len(axes) == 8  # 7 joints + the gripper
    for j, ax in enumerate(axes[:7]):
        assert ax.get_ylabel() == f"joint{j + 1} [rad]"
        horizontal = sorted(round(float(line.get_ydata()[0]), 4) for line in ax.get_lines()
                            if len(set(np.ravel(line.get_ydata()))) == 1 and len(line.get_ydata()) == 2)
        lo, hi, m = limits.q_min[j], limits.q_max[j], limits.margin[j]
        assert horizontal == sorted(round(v, 4) for v in (lo, hi, lo + m, hi - m))
        traces = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
        assert [len(line.get_xdata()) for line in traces] == [200, 50]  # measured, commanded
        assert any("limits" in text.get_text() and "rad" in text.get_text() for text in ax.texts)
    # a limit the trace comes near is in view; a far one does not squash the trace
    assert axes[3].get_ylim()[1] >= limits.q_max[3]
    assert axes[0].get_ylim()[1] < limits.q_max[0] and axes[0].get_ylim()[1] - axes[0].get_ylim()[0] < 0.5
    gripper = axes[7]
    assert gripper.get_ylabel().endswith("width [m]") and gripper.get_xlabel() == "simulated time [s]"
    g_lines = [line for line in gripper.get_lines() if len(line.get_xdata()) > 2]
    assert [len(line.get_xdata()) for line in g_lines] == [200, 41]  # the last command held to the end
    assert g_lines[1].get_xdata()[-1] == pytest.approx(g_lines[0].get_xdata()[-1])
    assert g_lines[1].get_drawstyle() == "steps-post"
    labels = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert labels[:2] == ["measured", "commanded"] and any(label.startswith("limit") for label in labels)
    assert fig.axes[0].get_xlim()[0] < 0.5  # time from the episode's start, not the simulation clock


def test_write_plot(tmp_path):
    measured, commanded, g_meas, g_cmd = _traces()
    path = tmp_path / "joints_00.png"
    assert media.write_plot(path, measured, commanded, [f"fr3_joint{j}" for j in range(1, 8)], "t",
                            media.JointLimits.load("fr3_sim"), g_meas, g_cmd)
    assert path.stat().st_size > 20_000
    assert not media.write_plot(tmp_path / "none.png", [], [], ["a"], "t")
    assert media.JointLimits.load("no_such_robot") is None
