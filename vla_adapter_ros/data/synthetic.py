"""Synthetic episodes for tests and demos: rosbag2 MCAP bags with a known joint trajectory.

Camera frames encode their index in the pixel values (``frame % 256`` in every pixel of channel 0,
``frame // 256`` in channel 1), so a converted dataset can be checked frame by frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .bag_io import BagRecorder, EpisodeMetadata, make_typestore

ARM_NAMES = [f"fr3_joint{i}" for i in range(1, 8)]
FINGER_NAMES = ["fr3_finger_joint1", "fr3_finger_joint2"]
Q_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def _time(ts, t_ns: int):
    return ts.types["builtin_interfaces/msg/Time"](sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def _header(ts, t_ns: int, frame_id: str = ""):
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, t_ns), frame_id=frame_id)


def image_msg(ts, t_ns: int, img: np.ndarray, encoding: str = "rgb8"):
    h, w, c = img.shape
    return ts.types["sensor_msgs/msg/Image"](
        header=_header(ts, t_ns, "camera"), height=h, width=w, encoding=encoding, is_bigendian=0, step=w * c,
        data=np.ascontiguousarray(img, dtype=np.uint8).reshape(-1))


def compressed_msg(ts, t_ns: int, img: np.ndarray, quality: int = 95):
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="JPEG", quality=quality)
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=_header(ts, t_ns, "camera"), format="jpeg", data=np.frombuffer(buf.getvalue(), dtype=np.uint8))


def joint_state_msg(ts, t_ns: int, q: np.ndarray, fingers: Optional[np.ndarray] = None):
    names = list(ARM_NAMES) + (list(FINGER_NAMES) if fingers is not None else [])
    pos = np.concatenate([q, fingers]) if fingers is not None else np.asarray(q, dtype=np.float64)
    return ts.types["sensor_msgs/msg/JointState"](
        header=_header(ts, t_ns), name=names, position=pos.astype(np.float64),
        velocity=np.zeros(0, dtype=np.float64), effort=np.zeros(0, dtype=np.float64))


def string_msg(ts, text: str):
    return ts.types["std_msgs/msg/String"](data=text)


def frame_image(k: int, size=(16, 16), channels: int = 3) -> np.ndarray:
    img = np.zeros((*size, channels), dtype=np.uint8)
    img[..., 0] = k % 256
    img[..., 1] = (k // 256) % 256
    if channels > 2:
        img[..., 2] = 255 - (k % 256)
    return img


def write_synthetic_bag(
    root: Union[str, Path],
    name: str,
    n_frames: int = 20,
    camera_period_s: float = 0.1,
    joint_rate_factor: int = 2,
    q_of_frame: Optional[Callable[[float], np.ndarray]] = None,
    fingers_of_frame: Optional[Callable[[float], np.ndarray]] = None,
    instruction: str = "pick up the cube",
    camera_topics: Sequence[str] = ("/camera/primary/image_raw", "/camera/wrist/image_raw"),
    joint_topic: str = "/joint_states",
    image_size=(16, 16),
    skip_joint_frames: Sequence[int] = (),
    t0_ns: int = 1_000_000_000_000,
    typestore=None,
    extra: Sequence[tuple] = (),
    encoding: str = "rgb8",
) -> Path:
    """Write one episode bag. Cameras publish at frames k = 0..n_frames-1 (t0 + k*period); joint states
    ``joint_rate_factor`` times per frame, the first exactly at each camera stamp. ``q_of_frame(x)``
    gives the 7 joints at fractional frame x (default: linear ramp 0.01 rad/frame on every joint).
    Joint messages of the frames in ``skip_joint_frames`` (all sub-samples up to the next frame) are left out.
    ``extra``: more (t_ns, topic, type name, message) to record; ``encoding``: rgb8, bgr8 or jpeg
    (sensor_msgs/CompressedImage)."""
    ts = typestore or make_typestore()
    q_of_frame = q_of_frame or (lambda x: Q_HOME + 0.01 * x)
    fingers_of_frame = fingers_of_frame or (lambda x: np.array([0.04, 0.04]))
    rec = BagRecorder(root, typestore=ts)
    rec.start(EpisodeMetadata(instruction=instruction, episode_name=name, config={"synthetic": True}), now_ns=t0_ns)
    period = int(round(camera_period_s * 1e9))
    msgs = []
    for k in range(n_frames):
        t = t0_ns + k * period
        for ci, topic in enumerate(camera_topics):
            img = frame_image(k, image_size)
            if ci > 0:
                img = img.copy()
                img[..., 2] = ci
            if encoding == "jpeg":
                msgs.append((t, topic, "sensor_msgs/msg/CompressedImage", compressed_msg(ts, t, img)))
            elif encoding == "bgr8":
                msgs.append((t, topic, "sensor_msgs/msg/Image", image_msg(ts, t, img[:, :, ::-1], "bgr8")))
            else:
                msgs.append((t, topic, "sensor_msgs/msg/Image", image_msg(ts, t, img)))
        if k in set(skip_joint_frames):
            continue
        for j in range(joint_rate_factor):
            x = k + j / joint_rate_factor
            tj = t + j * period // joint_rate_factor
            msgs.append((tj, joint_topic, "sensor_msgs/msg/JointState",
                         joint_state_msg(ts, tj, q_of_frame(x), fingers_of_frame(x))))
    msgs.extend(extra)
    msgs.sort(key=lambda m: m[0])
    for t, topic, mt, msg in msgs:
        rec.write(topic, mt, ts.serialize_cdr(msg, mt), t + 1_000_000)  # received 1 ms after the stamp
    return rec.stop(success=True, now_ns=t0_ns + n_frames * period)
