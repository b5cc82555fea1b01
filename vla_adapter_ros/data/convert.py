"""``vla-adapter-ros convert BAGS... OUT``: rosbag2 episodes -> LeRobot v3-layout dataset.

Pipeline per bag (one bag = one episode):

1. read and deserialize the configured topics (:class:`~vla_adapter_ros.data.bag_io.BagSource`: rosbags, or
   for a recording cut short -- no metadata.yaml / MCAP summary -- every complete message salvaged by our
   own MCAP record scan, with a one-line warning; our custom types registered from msg/);
2. build a reference clock: the primary camera's stamps (``clock="camera"``) or a fixed rate
   (``clock="fixed"``, ``fps``);
3. for each tick take the latest message of every source at or before the tick (sample and hold);
   a tick where a source is missing or older than its ``max_age`` is dropped and counted;
4. derive per-frame actions (target = next frame's measured state, the default ``labels="measured"``, or
   with ``labels="command"`` the command in effect until the next frame) in the chosen action space
   (``joint_position``/``joint_delta``/``eef_delta``; EEF deltas: next measured pose minus measured pose,
   :func:`vla_adapter_ros.data.labels.eef_delta`, so an episode's deltas sum to its real motion) plus an
   optional gripper column, and proprio with :func:`vla_adapter_ros.inference.io_spec.build_proprio`;
   the last synced frame has no successor and is not a sample;
5. trim idle head/tail frames (no arm motion, no gripper change);
6. append to the dataset; statistics (q01/q99/min/max/mean/std) over every kept frame.

A bag that cannot be read (corrupt, not MCAP, missing topics) gets an error line in the report and
contributes nothing; the others still convert. Pure Python: rosbags, numpy, pyarrow, Pillow.
``timestamp`` is ``frame_index / fps`` (LeRobot's convention); the reference clock's time is kept in
``camera_timestamp``. meta/stats.json and the episode table's ``stats/<feature>/<stat>`` columns hold
LeRobot's statistics of every feature (images: per channel in [0, 1], shaped (3, 1, 1)).

Output layout (LeRobot ``codebase_version`` v3.0; images embedded as PNG in the parquet files)::

    OUT/meta/info.json
    OUT/meta/stats.json                  LeRobot per-feature statistics (images included)
    OUT/meta/tasks.parquet
    OUT/meta/episodes/chunk-000/file-000.parquet
    OUT/meta/dataset_statistics.json     the model's Normalizer format {name: {action, proprio, ...}}
    OUT/meta/conversion_report.json
    OUT/data/chunk-000/file-000.parquet  (new file every ``data_files_size_in_mb``)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..control.kinematics import FrankaKinematics, matrix_to_axis_angle
from ..inference.io_spec import ACTION_SPACES, PROPRIO_LAYOUTS, build_proprio
from .bag_io import BagReadError, BagSource, make_typestore, read_episode_metadata
from .labels import eef_delta

# A bag recorded in the simulation may carry this file (written by `collect`): {"task", "seed",
# "start_jitter", ...}; it is copied into the dataset's episode table (column sim_episode, JSON) so that
# `vla-adapter-ros replay` can replay the episode in the same scene.
SIM_EPISODE_FILE = "sim_episode.json"

CODEBASE_VERSION = "v3.0"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."
# the reference clock's time of a row (s from the episode's first kept frame); `timestamp` is frame_index / fps.
# Not "observation.*": LeRobot would make any such column a policy input
CAMERA_TIME_KEY = "camera_timestamp"
SCALAR_COLUMNS = ("timestamp", CAMERA_TIME_KEY, "frame_index", "episode_index", "index", "task_index")
NORM_STATS_FILE = "dataset_statistics.json"
REPORT_FILE = "conversion_report.json"
CHUNKS_SIZE = 1000
ROW_GROUP_SIZE = 16  # rows per parquet row group (random access to images reads one group)


MAX_AGE_SOURCES = ("camera", "joints", "pose", "command", "gripper_state")


class ConvertError(ValueError):
    """A bag that cannot be converted (the message says which bag and why)."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class ConvertConfig:
    camera_topics: List[str] = field(default_factory=lambda: ["/camera/primary/image_raw", "/camera/wrist/image_raw"])
    camera_names: List[str] = field(default_factory=list)  # feature names; default primary, wrist, cam2...
    joint_state_topic: str = "/joint_states"
    gripper_state_topic: str = ""  # separate JointState for the fingers ("" = in joint_state_topic)
    eef_pose_topic: str = ""  # PoseStamped; "" = forward kinematics of the measured joints
    command_topic: str = ""  # ActionChunk / JointTrajectory / Float64MultiArray; used by labels="command"
    # "measured": an action is the step to the next frame's measured state (EEF deltas: next measured pose minus
    # measured pose, summing exactly to the real motion, as the executor integrates them); "command": the
    # command in effect until the next frame (command_topic; it leads the measured state, so EEF deltas made
    # from it overshoot the real motion)
    labels: str = "measured"
    gripper_command_topic: str = ""  # Float64/Float32 (see gripper_command_kind) / Bool / Float64MultiArray
    gripper_command_kind: str = "closure"  # "closure" (0 open .. 1 closed) or "width" (m)
    instruction_topic: str = ""  # std_msgs/String; "" = from the bag metadata
    instruction: str = ""  # override for every bag
    arm_joint_names: List[str] = field(default_factory=list)  # default: names ending joint1..joint7 (no finger)
    finger_joint_names: List[str] = field(default_factory=list)  # default: names containing "finger"
    action_space: str = "eef_delta"
    gripper: bool = True  # append a gripper column to the action
    gripper_open_value: float = 1.0  # action value for open (LIBERO convention 1 = open)
    gripper_closed_value: float = 0.0
    gripper_max_width: float = 0.08  # m, full opening (sum of both fingers)
    gripper_close_threshold: float = 0.5  # measured closure above this = closed
    proprio_layout: str = "eef_axisangle_fingers"
    clock: str = "camera"  # "camera" (primary camera stamps) or "fixed"
    fps: float = 0.0  # fixed clock rate; with clock=camera, 0 = estimate from the stamps
    time_source: str = "header"  # "header" (message stamps, receive time if zero) or "receive"
    max_age: Dict[str, float] = field(default_factory=lambda: {"camera": 0.1, "joints": 0.05, "pose": 0.05, "command": 0.5, "gripper_state": 0.1})
    idle_joint_eps: float = 1e-3  # rad; a frame moves when max |target - q| exceeds it
    idle_eef_eps: float = 1e-4  # m / rad for eef_delta
    trim_idle: bool = True
    keep_static: bool = False  # keep episodes without motion (reported either way)
    gap_factor: float = 3.0  # a timing gap is a period > gap_factor * median period
    max_step_factor: float = 1.5  # a sample's next frame must come within this * median frame period
    # (H, W) stored image size; default 224x224 with the model's own Lanczos resize (the model squashes every
    # image to 224 anyway, so this loses nothing for it and saves the resize in every training step); None = keep
    image_size: Optional[Tuple[int, int]] = (224, 224)
    dataset_name: str = "vla_adapter_ros"
    robot_type: str = "franka"
    data_files_size_in_mb: float = 100.0

    def validate(self) -> "ConvertConfig":
        if not self.camera_topics:
            raise ConvertError("at least one camera topic is needed")
        if self.action_space not in ACTION_SPACES:
            raise ConvertError(f"action_space must be one of {ACTION_SPACES}, got {self.action_space!r}")
        if self.proprio_layout not in PROPRIO_LAYOUTS:
            raise ConvertError(f"proprio_layout must be one of {sorted(PROPRIO_LAYOUTS)}, got {self.proprio_layout!r}")
        if self.clock not in ("camera", "fixed"):
            raise ConvertError(f"clock must be 'camera' or 'fixed', got {self.clock!r}")
        if self.clock == "fixed" and not self.fps > 0:
            raise ConvertError("clock=fixed needs fps > 0")
        if self.time_source not in ("header", "receive"):
            raise ConvertError(f"time_source must be 'header' or 'receive', got {self.time_source!r}")
        if self.gripper_command_kind not in ("closure", "width"):
            raise ConvertError("gripper_command_kind must be 'closure' or 'width'")
        if self.labels not in ("measured", "command"):
            raise ConvertError(f"labels must be 'measured' or 'command', got {self.labels!r}")
        if self.labels == "command" and not self.command_topic:
            raise ConvertError("labels='command' needs command_topic")
        unknown = set(self.max_age) - set(MAX_AGE_SOURCES)
        if unknown:
            raise ConvertError(f"max_age: unknown sources {sorted(unknown)}; known: {list(MAX_AGE_SOURCES)}")
        if self.camera_names and len(self.camera_names) != len(self.camera_topics):
            raise ConvertError("camera_names must have one name per camera topic")
        return self

    @property
    def cameras(self) -> List[str]:
        if self.camera_names:
            return list(self.camera_names)
        base = ["primary", "wrist"]
        return [base[i] if i < 2 else f"cam{i}" for i in range(len(self.camera_topics))]

    @property
    def action_dim(self) -> int:
        return (6 if self.action_space == "eef_delta" else 7) + int(self.gripper)

    def action_names(self) -> List[str]:
        arm = (["eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz"] if self.action_space == "eef_delta"
               else [f"joint{i + 1}" for i in range(7)])
        return arm + (["gripper"] if self.gripper else [])

    def proprio_names(self) -> List[str]:
        j = [f"joint{i + 1}" for i in range(7)]
        return {
            "joints": j,
            "joints_fingers": j + ["finger1", "finger2"],
            "joints_gripper_width": j + ["gripper_width"],
            "eef_axisangle_fingers": ["eef_x", "eef_y", "eef_z", "eef_rx", "eef_ry", "eef_rz", "finger1", "finger2"],
        }[self.proprio_layout]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConvertConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConvertError(f"unknown convert options {sorted(unknown)}")
        cfg = cls(**dict(d))
        if isinstance(cfg.max_age, Mapping):
            cfg.max_age = {**cls().max_age, **dict(cfg.max_age)}
        if cfg.image_size is not None:
            cfg.image_size = tuple(int(x) for x in cfg.image_size)  # type: ignore
        return cfg.validate()


# ---------------------------------------------------------------------------------------------
# message decoding
# ---------------------------------------------------------------------------------------------
def stamp_ns(msg: Any) -> int:
    h = getattr(msg, "header", None)
    if h is None:
        return 0
    return int(h.stamp.sec) * 1_000_000_000 + int(h.stamp.nanosec)


def decode_image(msg: Any) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/rgba8/bgra8/mono8) or CompressedImage (JPEG or PNG, e.g. image_transport's
    ``format`` "rgb8; jpeg compressed bgr8": the file itself says how to decode it) -> HxWx3 uint8 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):  # CompressedImage
        from PIL import Image as PILImage

        fmt = str(msg.format)
        if "compresseddepth" in fmt.lower().replace(" ", ""):
            raise ConvertError(f"CompressedImage format {fmt!r} is a depth image, not a camera image")
        try:
            with PILImage.open(io.BytesIO(bytes(msg.data))) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as e:
            raise ConvertError(f"CompressedImage (format {fmt!r}) does not decode: {type(e).__name__}: {e}") from e
    enc = msg.encoding.lower()
    chans = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}
    if enc not in chans:
        raise ConvertError(f"unsupported image encoding {msg.encoding!r}")
    c, h, w = chans[enc], int(msg.height), int(msg.width)
    step = int(msg.step) or w * c
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if buf.size < step * h:
        raise ConvertError(f"image data has {buf.size} bytes, expected {step * h}")
    img = buf[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    else:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n < 1e-12:
        raise ConvertError("zero quaternion")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


_JOINT_RE = re.compile(r"joint_?([1-7])$")


def _arm_indices(names: Sequence[str], wanted: Sequence[str]) -> List[int]:
    names = list(names)
    if wanted:
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ConvertError(f"joint names {missing} not in JointState names {names}")
        return [names.index(n) for n in wanted]
    found = {}
    for i, n in enumerate(names):
        m = _JOINT_RE.search(n)
        if m and "finger" not in n:
            found.setdefault(int(m.group(1)), i)
    if len(found) == 7:
        return [found[k] for k in range(1, 8)]
    if not names:
        return list(range(7))
    raise ConvertError(f"cannot find 7 arm joints in JointState names {names} (set arm_joint_names)")


def _finger_indices(names: Sequence[str], wanted: Sequence[str]) -> List[int]:
    names = list(names)
    if wanted:
        return [names.index(n) for n in wanted if n in names]
    return [i for i, n in enumerate(names) if "finger" in n]


# ---------------------------------------------------------------------------------------------
# per-bag extraction
# ---------------------------------------------------------------------------------------------
@dataclass
class Series:
    """Time-sorted samples of one source: t (ns int64) and a list of values."""

    t: np.ndarray
    v: List[Any]

    @classmethod
    def build(cls, items: List[Tuple[int, Any]]) -> "Series":
        items.sort(key=lambda x: x[0])
        return cls(np.asarray([i[0] for i in items], dtype=np.int64), [i[1] for i in items])

    def latest(self, ticks: np.ndarray) -> np.ndarray:
        """Index of the latest sample at or before each tick (-1 = none)."""
        return np.searchsorted(self.t, ticks, side="right") - 1


def _read_bag(bag: Path, source: BagSource, cfg: ConvertConfig,
              typestore: Any) -> Tuple[Dict[str, Series], Dict[str, Any], Dict[str, List[int]]]:
    """Deserialize the configured topics. Returns sources, episode metadata, raw receive times per topic."""
    meta = read_episode_metadata(bag) if bag.is_dir() else {}
    roles: Dict[str, str] = {}
    for i, t in enumerate(cfg.camera_topics):
        roles[t] = f"cam{i}"
    for role, topic in (("joints", cfg.joint_state_topic), ("gripper_state", cfg.gripper_state_topic),
                        ("pose", cfg.eef_pose_topic),
                        ("command", cfg.command_topic if cfg.labels == "command" else ""),
                        ("gripper_cmd", cfg.gripper_command_topic), ("instruction", cfg.instruction_topic)):
        if topic:
            if topic in roles:
                raise ConvertError(f"topic {topic} is configured twice")
            roles[topic] = role
    items: Dict[str, List[Tuple[int, Any]]] = {r: [] for r in roles.values()}
    recv: Dict[str, List[int]] = {r: [] for r in roles.values()}
    arm_idx: Dict[Tuple[str, ...], List[int]] = {}
    fin_idx: Dict[Tuple[str, ...], List[int]] = {}
    need = list(cfg.camera_topics) + [cfg.joint_state_topic]

    def check_topics():
        have = source.topics
        missing = [t for t in need if have is not None and t not in have]
        if missing:
            note = f"; {source.warning()}" if source.salvaged else ""
            raise ConvertError(f"{bag}: topics {missing} not in the bag (it has {sorted(have)}){note}")

    check_topics()  # before reading, when rosbags knows the topics; a salvaged bag's after the scan
    try:
        for topic, msgtype, t_recv, raw in source.messages(roles):
            role = roles[topic]
            if role.startswith("cam"):  # images: only the stamp now, pixels later for the kept frames
                t_hdr = _cdr_header_stamp(raw)
                value: Any = len(recv[role])  # ordinal of the message on its topic
            else:
                msg = typestore.deserialize_cdr(raw, msgtype)
                t_hdr = stamp_ns(msg)
                value = _decode(role, msgtype, msg, cfg, arm_idx, fin_idx)
            t = t_hdr if (cfg.time_source == "header" and t_hdr > 0) else int(t_recv)
            recv[role].append(int(t_recv))
            items[role].append((t, value))
    except ConvertError:
        raise
    except Exception as e:  # truncated / corrupt bags surface as many different exception types
        raise ConvertError(f"{bag}: cannot read bag ({type(e).__name__}: {e})") from e
    check_topics()
    return {r: Series.build(v) for r, v in items.items()}, meta, recv


def _cdr_header_stamp(raw: bytes) -> int:
    """Header stamp (ns) of a CDR message whose first field is std_msgs/Header (Image, CompressedImage)."""
    import struct

    if len(raw) < 12:
        raise ConvertError("message too short for a header")
    endian = "<" if raw[1] & 1 else ">"
    sec, nsec = struct.unpack_from(endian + "iI", raw, 4)
    return int(sec) * 1_000_000_000 + int(nsec)


def resize_for_storage(img: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Square sizes: the model's Lanczos-3 antialiased resize (same as inference preprocessing);
    other sizes: PIL Lanczos."""
    h, w = size
    if h == w:
        from ..model.processor import resize_lanczos

        return resize_lanczos(img, h)
    from PIL import Image as PILImage

    return np.asarray(PILImage.fromarray(img).resize((w, h), PILImage.LANCZOS))


def channel_histogram(img: np.ndarray) -> np.ndarray:
    """(3, 256) int64: how many pixels of each RGB channel have each value (the exact image statistics of
    a dataset are sums of these)."""
    img = np.asarray(img, dtype=np.uint8)
    return np.stack([np.bincount(img[..., c].reshape(-1), minlength=256) for c in range(3)]).astype(np.int64)


def _load_images(bag: Path, source: BagSource, cfg: ConvertConfig, typestore: Any,
                 wanted: Dict[int, set]) -> Tuple[Dict[int, Dict[int, bytes]], Dict[int, Dict[int, np.ndarray]]]:
    """Second pass: decode (and resize) the wanted messages of each camera (camera index -> ordinals) and
    return them PNG-encoded, so only compressed frames stay in memory, with each stored image's
    :func:`channel_histogram`."""
    topic_cam = {t: i for i, t in enumerate(cfg.camera_topics)}
    out: Dict[int, Dict[int, bytes]] = {i: {} for i in wanted}
    hist: Dict[int, Dict[int, np.ndarray]] = {i: {} for i in wanted}
    seen = {i: 0 for i in wanted}
    try:
        for topic, msgtype, _t, raw in source.messages(topic_cam):
            ci = topic_cam[topic]
            k = seen[ci]
            seen[ci] += 1
            if k not in wanted[ci]:
                continue
            img = decode_image(typestore.deserialize_cdr(raw, msgtype))
            if cfg.image_size is not None and img.shape[:2] != tuple(cfg.image_size):
                img = resize_for_storage(img, tuple(cfg.image_size))
            out[ci][k] = encode_png(img)
            hist[ci][k] = channel_histogram(img)
    except ConvertError as e:
        raise ConvertError(f"{bag}: {e}") from e
    except Exception as e:
        raise ConvertError(f"{bag}: cannot read images ({type(e).__name__}: {e})") from e
    return out, hist


def _decode(role: str, msgtype: str, msg: Any, cfg: ConvertConfig, arm_cache, fin_cache) -> Any:
    if role in ("joints", "gripper_state"):
        names = tuple(msg.name)
        pos = np.asarray(msg.position, dtype=np.float64)
        out: Dict[str, Any] = {}
        if role == "joints":
            if names not in arm_cache:
                arm_cache[names] = _arm_indices(names, cfg.arm_joint_names)
            out["q"] = pos[arm_cache[names]]
        if names not in fin_cache:
            fin_cache[names] = _finger_indices(names, cfg.finger_joint_names)
        fi = fin_cache[names]
        out["fingers"] = pos[fi] if len(fi) == 2 else None
        return out
    if role == "pose":
        p, o = msg.pose.position, msg.pose.orientation
        m = np.eye(4)
        m[:3, :3] = quat_to_matrix(o.x, o.y, o.z, o.w)
        m[:3, 3] = [p.x, p.y, p.z]
        return m
    if role == "command":
        if msgtype.endswith("/ActionChunk"):
            if int(msg.action_space) != 0:
                raise ConvertError("command ActionChunk must be JOINT_POSITION (action_space 0)")
            a = np.asarray(msg.actions, dtype=np.float64).reshape(int(msg.horizon), int(msg.action_dim))
            if a.shape[0] == 0 or a.shape[1] < 7:
                raise ConvertError("command ActionChunk without 7 joint columns")
            g = np.asarray(msg.gripper, dtype=np.float64)
            # row i is the target for header.stamp + i * dt (picked per frame time in extract_episode)
            return {"q": a[0, :7], "closure": float(g[0]) if g.size else None, "rows": a[:, :7],
                    "grip_rows": g if g.size == a.shape[0] else None, "stamp": stamp_ns(msg), "dt": float(msg.dt)}
        if msgtype.endswith("/JointTrajectory"):
            if not msg.points:
                raise ConvertError("JointTrajectory command without points")
            names = tuple(msg.joint_names)
            if names not in arm_cache:
                arm_cache[names] = _arm_indices(names, cfg.arm_joint_names)
            return {"q": np.asarray(msg.points[0].positions, dtype=np.float64)[arm_cache[names]], "closure": None}
        if msgtype.endswith("/Float64MultiArray"):
            d = np.asarray(msg.data, dtype=np.float64)
            if d.size < 7:
                raise ConvertError(f"Float64MultiArray command has {d.size} values, expected 7")
            return {"q": d[:7], "closure": None}
        raise ConvertError(f"unsupported command type {msgtype}")
    if role == "gripper_cmd":
        if msgtype.endswith("/Bool"):
            return 1.0 if msg.data else 0.0
        val = float(np.asarray(msg.data, dtype=np.float64).reshape(-1)[0])
        if cfg.gripper_command_kind == "width":
            return float(np.clip(1.0 - val / cfg.gripper_max_width, 0.0, 1.0))
        return float(np.clip(val, 0.0, 1.0))
    if role == "instruction":
        return str(msg.data)
    raise ConvertError(f"unknown role {role}")


def _gaps(t: np.ndarray, factor: float) -> Dict[str, Any]:
    if t.size < 3:
        return {"count": int(t.size), "median_period_s": None, "max_gap_s": None, "gaps": 0}
    d = np.diff(np.sort(t)) * 1e-9
    med = float(np.median(d))
    return {"count": int(t.size), "median_period_s": med, "max_gap_s": float(d.max()),
            "gaps": int(np.sum(d > factor * med)) if med > 0 else 0}


@dataclass
class Episode:
    bag: str
    instruction: str
    images: Dict[str, List[bytes]]  # PNG-encoded frames per camera name
    proprio: np.ndarray  # (N, P)
    action: np.ndarray  # (N, A)
    camera_time: np.ndarray  # (N,) s from the first kept frame, on the reference clock (camera stamps)
    report: Dict[str, Any]
    image_shapes: Dict[str, Tuple[int, int, int]] = field(default_factory=dict)
    sim_episode: Dict[str, Any] = field(default_factory=dict)  # the bag's SIM_EPISODE_FILE, if any
    image_hist: Dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (3, 256) pixel counts, all frames

    def image(self, cam: str, k: int) -> np.ndarray:
        return decode_png(self.images[cam][k])


def extract_episode(bag: Union[str, Path], cfg: ConvertConfig, typestore: Any = None,
                    kin: Optional[FrankaKinematics] = None) -> Episode:
    """One bag -> one synchronized episode (raises ConvertError with the bag's name on any problem)."""
    bag = Path(bag)
    typestore = typestore if typestore is not None else make_typestore()
    kin = kin or FrankaKinematics()
    try:
        source = BagSource(bag)
    except BagReadError as e:
        raise ConvertError(str(e)) from e
    src, meta, recv = _read_bag(bag, source, cfg, typestore)
    rep: Dict[str, Any] = {"bag": str(bag), "status": "ok", "warnings": []}
    if source.salvaged and source.scan is not None:  # read by the MCAP record scan, not rosbags
        sc = source.scan
        rep["salvage"] = {"complete": sc.complete, "messages": sc.messages, "topics": dict(sc.topics),
                          "duration_s": sc.duration_s, "stop": sc.stop, "files": list(sc.files),
                          "rosbags_error": source.reason}
        rep["warnings"].append(source.warning())
    rep["topics"] = {role: _gaps(np.asarray(v, dtype=np.int64), cfg.gap_factor) for role, v in recv.items()}

    instruction = cfg.instruction or ""
    if not instruction and "instruction" in src and src["instruction"].v:
        instruction = src["instruction"].v[-1]
    if not instruction:
        instruction = str(meta.get("instruction", "") or "")
    if not instruction.strip():
        raise ConvertError(f"{bag}: no instruction (bag metadata, instruction_topic or --instruction)")

    cams = [f"cam{i}" for i in range(len(cfg.camera_topics))]
    for role in cams + ["joints"]:
        if len(src[role].t) == 0:
            raise ConvertError(f"{bag}: no messages on {role}")
    # ----- reference clock -----
    if cfg.clock == "camera":
        ticks = src["cam0"].t.copy()
    else:
        start = max(int(src[r].t[0]) for r in cams + ["joints"])
        end = min(int(src[r].t[-1]) for r in cams + ["joints"])
        n = int(math.floor((end - start) * 1e-9 * cfg.fps + 1e-9)) + 1 if end >= start else 0
        ticks = start + np.round(np.arange(n) * (1e9 / cfg.fps)).astype(np.int64)
    # ----- sample and hold with max age -----
    # commands are checked at the time they are used (the next frame), not here
    roles = cams + ["joints"] + [r for r in ("pose", "gripper_state", "gripper_cmd") if r in src]
    age_key = {"joints": "joints", "pose": "pose", "gripper_state": "gripper_state"}
    idx: Dict[str, np.ndarray] = {}
    valid = np.ones(len(ticks), dtype=bool)
    dropped: Dict[str, int] = {}
    for role in roles:
        s = src[role]
        i = s.latest(ticks)
        if role == "gripper_cmd":  # sparse: held without age limit, open before the first command
            idx[role] = i
            continue
        max_age = cfg.max_age.get("camera" if role.startswith("cam") else age_key[role], math.inf)
        age = (ticks - s.t[np.maximum(i, 0)]) * 1e-9
        ok = (i >= 0) & (age <= max_age + 1e-9)
        bad = ~ok & valid
        name = cfg.camera_topics[int(role[3:])] if role.startswith("cam") else role
        dropped[name] = int(bad.sum())
        valid &= ok
        idx[role] = i
    rep["ticks"] = int(len(ticks))
    rep["dropped"] = dropped
    rep["dropped_total"] = int((~valid).sum())
    keep = np.nonzero(valid)[0]
    rep["synced_frames"] = int(keep.size)
    if keep.size < 2:
        raise ConvertError(f"{bag}: fewer than 2 synchronized frames ({keep.size} of {len(ticks)}; dropped {dropped})")
    t = ticks[keep]
    period = 1.0 / cfg.fps if cfg.clock == "fixed" else float(np.median(np.diff(src["cam0"].t)) * 1e-9)
    rep["sync_period_s"] = period
    rep["sync_gaps"] = int(np.sum(np.diff(t) * 1e-9 > cfg.gap_factor * rep["sync_period_s"]))

    def pick(role):
        s = src[role]
        return [s.v[j] for j in idx[role][keep]]

    joints = pick("joints")
    q = np.stack([j["q"] for j in joints])
    fingers = [j["fingers"] for j in joints]
    if "gripper_state" in src:
        fingers = [g["fingers"] for g in pick("gripper_state")]
    if any(f is None for f in fingers):
        fingers_arr = None
    else:
        fingers_arr = np.stack(fingers)
    # ----- measured eef pose -----
    if "pose" in src:
        poses = np.stack(pick("pose"))
    else:
        poses = np.stack([kin.fk(qq) for qq in q])
    # ----- targets (the state the action asks for at the next frame) -----
    n = keep.size
    if "command" in src:
        # command in effect until the next frame: latest command at or before the next frame's time
        cs = src["command"]
        ci = cs.latest(t[1:])
        cmd_ok = ci >= 0
        cmd_ok &= (t[1:] - cs.t[np.maximum(ci, 0)]) * 1e-9 <= cfg.max_age.get("command", math.inf) + 1e-9
        tq_list, cmd_closure = [], []
        for kk, (tt, j) in enumerate(zip(t[1:], ci)):
            if not cmd_ok[kk]:  # no (fresh) command: placeholder, the sample is dropped below
                tq_list.append(q[kk + 1])
                cmd_closure.append(None)
                continue
            c = cs.v[j]
            if "rows" in c and c["dt"] > 0 and len(c["rows"]) > 1:  # ActionChunk: the row due at tt
                r = int(np.clip(np.floor((tt - c["stamp"]) * 1e-9 / c["dt"] + 1e-6), 0, len(c["rows"]) - 1))
                tq_list.append(c["rows"][r])
                cmd_closure.append(float(c["grip_rows"][r]) if c["grip_rows"] is not None else c["closure"])
            else:
                tq_list.append(c["q"])
                cmd_closure.append(c["closure"])
        tq = np.stack(tq_list)
    else:
        tq = q[1:]
        cmd_closure = [None] * (n - 1)
        cmd_ok = np.ones(n - 1, dtype=bool)
    if "command" in src:
        dropped["command"] = int((~cmd_ok).sum())
        rep["dropped_total"] += dropped["command"]
    # a sample whose successor is not the next tick (frames dropped in between) would teach a multi-step
    # jump as one action: drop it
    gap_ok = np.diff(t) * 1e-9 <= cfg.max_step_factor * rep["sync_period_s"]
    dropped["gap"] = int((~gap_ok & cmd_ok).sum())
    rep["dropped_total"] += dropped["gap"]
    cmd_ok = cmd_ok & gap_ok
    q0 = q[:-1]
    if cfg.action_space == "joint_position":
        arm = tq
    elif cfg.action_space == "joint_delta":
        arm = tq - q0
    else:
        if "pose" in src and "command" not in src:
            tposes = poses[1:]
        else:
            tposes = np.stack([kin.fk(qq) for qq in tq])
        arm = np.array([eef_delta(poses[k], tposes[k]) for k in range(n - 1)]).reshape(n - 1, 6)
    # gripper closure 0 (open) .. 1 (closed) for each sample
    if "gripper_cmd" in src:
        gs = src["gripper_cmd"]
        gi = gs.latest(t[1:])
        closure = np.array([gs.v[j] if j >= 0 else 0.0 for j in gi])
    elif any(c is not None for c in cmd_closure):
        closure = np.array([c if c is not None else 0.0 for c in cmd_closure])
    elif fingers_arr is not None:
        width = fingers_arr[1:].sum(axis=1)
        closure = (1.0 - width / cfg.gripper_max_width > cfg.gripper_close_threshold).astype(np.float64)
    else:
        closure = np.zeros(n - 1)
    if cfg.gripper:
        gcol = cfg.gripper_open_value + closure * (cfg.gripper_closed_value - cfg.gripper_open_value)
        action = np.concatenate([arm, gcol[:, None]], axis=1)
    else:
        action = arm
    # ----- proprio -----
    proprio = np.stack([
        build_proprio(cfg.proprio_layout, q[k], None if fingers_arr is None else fingers_arr[k],
                      poses[k][:3, 3], matrix_to_axis_angle(poses[k][:3, :3]))
        for k in range(n - 1)
    ])
    # ----- idle trimming -----
    if cfg.action_space == "eef_delta":
        motion = np.maximum(np.abs(arm[:, :3]).max(axis=1), np.abs(arm[:, 3:]).max(axis=1)) > cfg.idle_eef_eps
    else:
        motion = np.abs(tq - q0).max(axis=1) > cfg.idle_joint_eps
    sidx = np.nonzero(cmd_ok)[0]  # samples with a valid target
    if sidx.size == 0:
        raise ConvertError(f"{bag}: no usable sample (dropped {dropped})")
    motion, closure = motion[sidx], closure[sidx]
    m = sidx.size
    gchange = np.zeros(m, dtype=bool)
    gchange[1:] = np.abs(np.diff(closure)) > 1e-6
    moving = motion | gchange
    rep["static"] = not bool(moving.any())
    if rep["static"]:
        if not cfg.keep_static:
            raise ConvertError(f"{bag}: static episode (no arm motion above threshold, no gripper change)")
        lo, hi = 0, m - 1
    elif cfg.trim_idle:
        nz = np.nonzero(moving)[0]
        lo, hi = int(nz[0]), int(nz[-1])
    else:
        lo, hi = 0, m - 1
    rep["trimmed_head"] = lo
    rep["trimmed_tail"] = (m - 1) - hi
    rows = sidx[lo:hi + 1]
    ordinals = {}
    for ci_ in range(len(cfg.cameras)):
        cam_idx = idx[f"cam{ci_}"][keep]
        ordinals[ci_] = [src[f"cam{ci_}"].v[cam_idx[r]] for r in rows]
    pngs, hists = _load_images(bag, source, cfg, typestore, {ci_: set(o) for ci_, o in ordinals.items()})
    images = {cam: [pngs[ci_][o] for o in ordinals[ci_]] for ci_, cam in enumerate(cfg.cameras)}
    # pixel counts over the stored rows (a camera frame held for several ticks counts once per row)
    image_hist = {cam: np.sum([hists[ci_][o] for o in ordinals[ci_]], axis=0) for ci_, cam in enumerate(cfg.cameras)}
    ts = (t[rows] - t[rows[0]]) * 1e-9
    rep["frames"] = int(rows.size)
    rep["instruction"] = instruction
    rep["labels"] = cfg.labels
    ep = Episode(str(bag), instruction, images, proprio[rows], action[rows], ts, rep, image_hist=image_hist)
    sim_file = bag / SIM_EPISODE_FILE
    if bag.is_dir() and sim_file.is_file():
        try:
            ep.sim_episode = dict(json.loads(sim_file.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ConvertError(f"{bag}: unreadable {SIM_EPISODE_FILE}: {e}") from e
    ep.image_shapes = {cam: ep.image(cam, 0).shape for cam in cfg.cameras}
    if not (np.all(np.isfinite(ep.action)) and np.all(np.isfinite(ep.proprio))):
        raise ConvertError(f"{bag}: non-finite action or proprio values")
    return ep


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def feature_stats(x: np.ndarray) -> Dict[str, List[float]]:
    x = np.asarray(x, dtype=np.float64)
    return {
        "mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(), "max": x.max(0).tolist(),
        "q01": np.quantile(x, 0.01, axis=0).tolist(), "q99": np.quantile(x, 0.99, axis=0).tolist(),
    }


LEROBOT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's q01, q10, q50, q90, q99


def lerobot_stats(x: np.ndarray) -> Dict[str, List[float]]:
    """LeRobot's statistics of a numeric feature (rows = frames): per dimension min, max, mean, std and the
    quantiles q01/q10/q50/q90/q99 (exact, numpy's linear interpolation), and ``count`` [frames]. A scalar
    feature (shape (N,)) gives one-element lists, as in LeRobot."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    out: Dict[str, Any] = {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
                           "std": x.std(0).tolist(), "count": [int(x.shape[0])]}
    for q in LEROBOT_QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0).tolist()
    return out


def image_stats(hist: np.ndarray, frames: int) -> Dict[str, Any]:
    """LeRobot's statistics of an image feature from the pixel counts of its frames (:func:`channel_histogram`
    summed): per RGB channel, of the pixel values scaled to [0, 1], min/max/mean/std and quantiles
    q01/q10/q50/q90/q99 (exact, as numpy's linear interpolation over all pixels), each shaped (3, 1, 1),
    and ``count`` [frames] (LeRobot counts images, not pixels)."""
    h = np.asarray(hist, dtype=np.float64).reshape(3, 256)
    v = np.arange(256, dtype=np.float64) / 255.0
    n = h.sum(axis=1)
    if not np.all(n > 0):
        raise ConvertError("image statistics of no pixels")
    mean = (h * v).sum(axis=1) / n
    std = np.sqrt(np.maximum((h * (v[None, :] - mean[:, None]) ** 2).sum(axis=1) / n, 0.0))
    nz = [np.nonzero(h[c])[0] for c in range(3)]
    cum = np.cumsum(h, axis=1)

    def order_stat(c: int, i: float) -> float:  # the i-th smallest pixel value (0-based) of channel c
        return float(v[int(np.searchsorted(cum[c], i, side="right"))])

    def shaped(vals) -> List[List[List[float]]]:
        return [[[float(x)]] for x in vals]

    out: Dict[str, Any] = {"min": shaped(v[z[0]] for z in nz), "max": shaped(v[z[-1]] for z in nz),
                           "mean": shaped(mean), "std": shaped(std), "count": [int(frames)]}
    for q in LEROBOT_QUANTILES:
        vals = []
        for c in range(3):
            pos = q * (n[c] - 1)
            lo = math.floor(pos)
            a = order_stat(c, lo)
            vals.append(a + (pos - lo) * (order_stat(c, lo + 1) - a) if pos > lo else a)
        out[f"q{int(round(q * 100)):02d}"] = shaped(vals)
    return out


def compute_norm_stats(actions: np.ndarray, proprio: np.ndarray, gripper_index: Optional[int],
                       num_trajectories: int) -> Dict[str, Any]:
    """One dataset entry of the model's statistics format (action mask: gripper not normalized)."""
    a = feature_stats(actions)
    mask = [True] * actions.shape[1]
    if gripper_index is not None:
        mask[gripper_index] = False
    a["mask"] = mask
    return {"action": a, "proprio": feature_stats(proprio), "num_transitions": int(actions.shape[0]),
            "num_trajectories": int(num_trajectories)}


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def encode_png(img: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _pandas_meta(columns: List[Tuple[str, str, str]], index: str) -> bytes:
    """Minimal pandas schema metadata so that pandas.read_parquet restores ``index`` as the index."""
    cols = [{"name": n, "field_name": n, "pandas_type": pt, "numpy_type": nt, "metadata": None} for n, pt, nt in columns]
    return json.dumps({"index_columns": [index], "column_indexes": [], "columns": cols,
                       "creator": {"library": "pyarrow", "version": "vla_adapter_ros"},
                       "pandas_version": "2.2.0"}).encode()


class DatasetWriter:
    """Appends episodes to a LeRobot v3-layout dataset directory."""

    def __init__(self, out: Union[str, Path], cfg: ConvertConfig, overwrite: bool = False):
        self.out = Path(out)
        self.cfg = cfg
        if self.out.exists() and any(self.out.iterdir()):
            if not overwrite:
                raise ConvertError(f"{self.out} exists and is not empty (use --overwrite)")
            shutil.rmtree(self.out)
        (self.out / "meta").mkdir(parents=True, exist_ok=True)
        self.tasks: Dict[str, int] = {}
        self.episodes: List[Dict[str, Any]] = []
        self.total = 0
        self.file_index = 0
        self._writer = None
        self._file_bytes = 0
        self._actions: List[np.ndarray] = []
        self._proprio: List[np.ndarray] = []
        self._columns: Dict[str, List[np.ndarray]] = {k: [] for k in SCALAR_COLUMNS}
        self._hist: Dict[str, np.ndarray] = {}  # camera -> (3, 256) pixel counts of every stored frame
        self.image_shapes: Dict[str, Tuple[int, int, int]] = {}
        # the dataset's frame rate: cfg.fps, else the first episode's camera rate (rounded to an integer when
        # within 5 %); every row's timestamp is frame_index / fps, as LeRobot expects
        self.fps: Optional[Union[int, float]] = None
        # the real frame periods (s): info's `dt`, the period a policy's chunk rows are played at, is their
        # median (0.104 s for the simulation's cameras, whose fps rounds to 10); never the rounded 1 / fps
        self.periods: List[float] = []

    def _schema(self):
        import pyarrow as pa

        img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        fields = [(IMAGE_PREFIX + c, img) for c in self.cfg.cameras]
        fields += [
            (STATE_KEY, pa.list_(pa.float32(), len(self.cfg.proprio_names()))),
            (ACTION_KEY, pa.list_(pa.float32(), self.cfg.action_dim)),
            ("timestamp", pa.float32()), (CAMERA_TIME_KEY, pa.float32()), ("frame_index", pa.int64()),
            ("episode_index", pa.int64()), ("index", pa.int64()), ("task_index", pa.int64()),
        ]
        return pa.schema(fields)

    def _episode_fps(self, ep: Episode) -> Optional[float]:
        period = ep.report.get("sync_period_s")
        return 1.0 / period if period else None

    def _set_fps(self, ep: Episode) -> Union[int, float]:
        if self.fps is None:
            fps = self.cfg.fps if self.cfg.fps > 0 else (self._episode_fps(ep) or 0.0)
            if not fps > 0:
                raise ConvertError(f"{ep.bag}: cannot tell the frame rate (set fps)")
            self.fps = int(round(fps)) if abs(fps - round(fps)) < 0.05 * max(fps, 1) else fps
        own = self._episode_fps(ep)
        real = 1.0 / self.cfg.fps if self.cfg.fps > 0 else ep.report.get("sync_period_s")
        self.periods.append(real or 1.0 / self.fps)
        if own and abs(own - self.fps) > 0.05 * self.fps:
            ep.report.setdefault("warnings", []).append(
                f"bag {ep.bag}: frame rate {own:.3g} Hz differs from the dataset's {self.fps} fps by more than 5 %: "
                f"its timestamp (frame_index / fps) misstates its timing ({CAMERA_TIME_KEY} keeps the real one)")
        return self.fps

    def _data_path(self, file_index: int) -> Path:
        chunk, f = divmod(file_index, CHUNKS_SIZE)
        return self.out / f"data/chunk-{chunk:03d}/file-{f:03d}.parquet"

    def add(self, ep: Episode) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = ep.action.shape[0]
        if ep.proprio.shape[1] != len(self.cfg.proprio_names()) or ep.action.shape[1] != self.cfg.action_dim:
            raise ConvertError(f"{ep.bag}: unexpected proprio/action width")
        for cam in self.cfg.cameras:
            shp = tuple(ep.image_shapes[cam])
            if self.image_shapes.setdefault(cam, shp) != shp:
                raise ConvertError(f"{ep.bag}: camera {cam} images are {shp}, earlier episodes {self.image_shapes[cam]}")
        fps = self._set_fps(ep)
        task = ep.instruction
        ti = self.tasks.setdefault(task, len(self.tasks))
        epi = len(self.episodes)
        if self._writer is not None and self._file_bytes > self.cfg.data_files_size_in_mb * 1e6:
            self._writer.close()
            self._writer, self._file_bytes = None, 0
            self.file_index += 1
        path = self._data_path(self.file_index)
        if self._writer is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(str(path), self._schema())
        cols: Dict[str, Any] = {}
        nbytes = 0
        for cam in self.cfg.cameras:
            pngs = ep.images[cam]
            nbytes += sum(len(p) for p in pngs)
            cols[IMAGE_PREFIX + cam] = [{"bytes": p, "path": f"frame_{epi:06d}_{k:06d}.png"} for k, p in enumerate(pngs)]
        cols[STATE_KEY] = ep.proprio.astype(np.float32).tolist()
        cols[ACTION_KEY] = ep.action.astype(np.float32).tolist()
        frame_index = np.arange(n, dtype=np.int64)
        scalars = {
            "timestamp": (frame_index / fps).astype(np.float32),  # LeRobot: exactly frame_index / fps
            CAMERA_TIME_KEY: np.asarray(ep.camera_time, dtype=np.float32),  # the reference clock's time
            "frame_index": frame_index,
            "episode_index": np.full(n, epi, dtype=np.int64),
            "index": np.arange(self.total, self.total + n, dtype=np.int64),
            "task_index": np.full(n, ti, dtype=np.int64),
        }
        cols.update(scalars)
        self._writer.write_table(pa.table(cols, schema=self._schema()), row_group_size=ROW_GROUP_SIZE)
        self._file_bytes += nbytes
        chunk, f = divmod(self.file_index, CHUNKS_SIZE)
        # per-episode statistics, flattened as LeRobot v3.0 keeps them in its episode table
        ep_stats: Dict[str, Dict[str, Any]] = {IMAGE_PREFIX + c: image_stats(ep.image_hist[c], n) for c in self.cfg.cameras}
        ep_stats[STATE_KEY] = lerobot_stats(ep.proprio)
        ep_stats[ACTION_KEY] = lerobot_stats(ep.action)
        ep_stats.update({k: lerobot_stats(v) for k, v in scalars.items()})
        self.episodes.append({
            "episode_index": epi, "tasks": [task], "length": n,
            "data/chunk_index": chunk, "data/file_index": f,
            "dataset_from_index": self.total, "dataset_to_index": self.total + n,
            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            "source_bag": ep.bag,
            "sim_episode": json.dumps(ep.sim_episode) if ep.sim_episode else "",
            **{f"stats/{feat}/{k}": v for feat, st in ep_stats.items() for k, v in st.items()},
        })
        self.total += n
        self._actions.append(ep.action)
        self._proprio.append(ep.proprio)
        for k, v in scalars.items():
            self._columns[k].append(v)
        for c in self.cfg.cameras:
            self._hist[c] = self._hist.get(c, 0) + ep.image_hist[c]
        return epi

    def finish(self, report: Dict[str, Any]) -> Dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.episodes:
            raise ConvertError("no episode could be converted")
        cfg = self.cfg
        actions = np.concatenate(self._actions)
        proprio = np.concatenate(self._proprio)
        meta = self.out / "meta"
        # tasks
        tasks = sorted(self.tasks.items(), key=lambda kv: kv[1])
        tt = pa.table({"task_index": pa.array([i for _, i in tasks], pa.int64()),
                       "task": pa.array([t for t, _ in tasks], pa.string())})
        tt = tt.replace_schema_metadata({b"pandas": _pandas_meta(
            [("task_index", "int64", "int64"), ("task", "unicode", "object")], "task")})
        pq.write_table(tt, str(meta / "tasks.parquet"))
        # episodes
        ep_dir = meta / "episodes/chunk-000"
        ep_dir.mkdir(parents=True, exist_ok=True)
        keys = list(self.episodes[0].keys())
        et = pa.table({k: [e[k] for e in self.episodes] for k in keys})
        pq.write_table(et, str(ep_dir / "file-000.parquet"))
        # statistics
        gi = cfg.action_dim - 1 if cfg.gripper else None
        norm = compute_norm_stats(actions, proprio, gi, len(self.episodes))
        (meta / NORM_STATS_FILE).write_text(json.dumps({cfg.dataset_name: norm}, indent=2))
        # LeRobot's stats.json: every numeric feature, images per channel in [0, 1] shaped (3, 1, 1)
        lr_stats: Dict[str, Any] = {IMAGE_PREFIX + c: image_stats(self._hist[c], self.total) for c in cfg.cameras}
        lr_stats[ACTION_KEY] = lerobot_stats(actions)
        lr_stats[STATE_KEY] = lerobot_stats(proprio)
        lr_stats.update({k: lerobot_stats(np.concatenate(v)) for k, v in self._columns.items()})
        (meta / "stats.json").write_text(json.dumps(lr_stats, indent=2))
        # info
        fps_out = self.fps
        features: Dict[str, Any] = {}
        for cam in cfg.cameras:
            h, w, c = self.image_shapes[cam]
            features[IMAGE_PREFIX + cam] = {"dtype": "image", "shape": [h, w, c], "names": ["height", "width", "channels"]}
        features[STATE_KEY] = {"dtype": "float32", "shape": [len(cfg.proprio_names())], "names": cfg.proprio_names()}
        features[ACTION_KEY] = {"dtype": "float32", "shape": [cfg.action_dim], "names": cfg.action_names()}
        for k, dt in (("timestamp", "float32"), (CAMERA_TIME_KEY, "float32"), ("frame_index", "int64"),
                      ("episode_index", "int64"), ("index", "int64"), ("task_index", "int64")):
            features[k] = {"dtype": dt, "shape": [1], "names": None}
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": cfg.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": int(self.total),
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": cfg.data_files_size_in_mb,
            "video_files_size_in_mb": 500,
            "fps": fps_out,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": None,
            "features": features,
            # ours (ignored by LeRobot): how to interpret the numbers
            "vla_adapter_ros": {
                "action_space": cfg.action_space, "proprio_layout": cfg.proprio_layout,
                "gripper_index": gi, "gripper_open_value": cfg.gripper_open_value,
                "gripper_closed_value": cfg.gripper_closed_value,
                "dt": float(np.median(self.periods)) if self.periods else None,
                "cameras": cfg.cameras, "dataset_name": cfg.dataset_name, "convert_config": _jsonable(asdict(cfg)),
            },
        }
        (meta / "info.json").write_text(json.dumps(info, indent=2))
        report["total_episodes"] = len(self.episodes)
        report["total_frames"] = int(self.total)
        (meta / REPORT_FILE).write_text(json.dumps(_jsonable(report), indent=2))
        return info


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def convert(bags: Sequence[Union[str, Path]], out: Union[str, Path], cfg: Optional[ConvertConfig] = None,
            overwrite: bool = False, log=None) -> Dict[str, Any]:
    """Convert ``bags`` into the dataset ``out``. Returns the report: {"bags": [per-bag report],
    "converted": n, "failed": n, "static": [...], "total_frames": n}. Raises ConvertError if no bag converted
    (then nothing is written). OUT appears (or is replaced, with ``overwrite``) only once the dataset is complete."""
    cfg = (cfg or ConvertConfig()).validate()
    log = log or (lambda s: None)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConvertError(f"{out} exists and is not empty (use --overwrite)")
    # Written next to OUT and moved into place only when done: an interrupted or failed run leaves OUT as it
    # was (absent, or the previous dataset), so a retry needs no --overwrite.
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    try:
        report = _convert_into(bags, partial, cfg, log)
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        os.replace(partial, out)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return report


def _convert_into(bags, out: Path, cfg: ConvertConfig, log) -> Dict[str, Any]:
    typestore = make_typestore()
    kin = FrankaKinematics()
    writer = DatasetWriter(out, cfg, overwrite=True)
    report: Dict[str, Any] = {"bags": [], "converted": 0, "failed": 0, "static": [], "warnings": []}
    for bag in bags:
        try:
            ep = extract_episode(bag, cfg, typestore, kin)
            writer.add(ep)
            report["bags"].append(ep.report)
            report["converted"] += 1
            if ep.report.get("static"):
                report["static"].append(str(bag))
            for w in ep.report.get("warnings", []):
                report["warnings"].append(w)
                log(f"WARN  {w}")
            log(f"ok    {bag}: {ep.report['frames']} frames (dropped {ep.report['dropped_total']}, "
                f"trimmed {ep.report['trimmed_head']}+{ep.report['trimmed_tail']})")
        except ConvertError as e:
            msg = str(e)
            if "static episode" in msg:
                report["static"].append(str(bag))
            report["bags"].append({"bag": str(bag), "status": "error", "error": msg})
            report["failed"] += 1
            log(f"ERROR {msg}")
    if report["converted"] == 0:  # nothing is written
        raise ConvertError("no bag could be converted: " + "; ".join(b["error"] for b in report["bags"]))
    writer.finish(report)
    return report


# ---------------------------------------------------------------------------------------------
# reading for training
# ---------------------------------------------------------------------------------------------
class LeRobotFrames:
    """Read access to a dataset written by :func:`convert` (pyarrow only, no LeRobot needed).

    Numeric columns are loaded eagerly; images are read lazily, one parquet row group at a time (the
    writer uses small row groups), so memory stays bounded for large datasets. Safe to use from
    DataLoader worker processes (file handles are opened per process)."""

    ROW_GROUP_CACHE = 4

    def __init__(self, path: Union[str, Path]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root = Path(path)
        info_file = self.root / "meta/info.json"
        if not info_file.is_file():
            raise ConvertError(f"{self.root}: not a dataset (meta/info.json missing)")
        self.info = json.loads(info_file.read_text())
        self.files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not self.files:
            raise ConvertError(f"{self.root}: no data parquet files")
        self.cameras = [k[len(IMAGE_PREFIX):] for k in self.info["features"] if k.startswith(IMAGE_PREFIX)]
        cols = [ACTION_KEY, STATE_KEY, "episode_index", "frame_index", "task_index", "index"]
        table = pa.concat_tables([pq.read_table(str(f), columns=cols) for f in self.files])
        self.action = np.asarray(table.column(ACTION_KEY).to_pylist(), dtype=np.float32)
        self.state = np.asarray(table.column(STATE_KEY).to_pylist(), dtype=np.float32)
        self.episode_index = table.column("episode_index").to_numpy()
        self.frame_index = table.column("frame_index").to_numpy()
        self.task_index = table.column("task_index").to_numpy()
        # row-group index: global start row of every (file, row group)
        starts, where, off = [], [], 0
        for fi, f in enumerate(self.files):
            md = pq.ParquetFile(str(f)).metadata
            for rg in range(md.num_row_groups):
                starts.append(off)
                where.append((fi, rg))
                off += md.row_group(rg).num_rows
        self._rg_start = np.asarray(starts, dtype=np.int64)
        self._rg_where = where
        self._handles: Dict[int, Any] = {}
        self._cache: Dict[int, Any] = {}
        self._pid = None
        self._images: Dict[str, np.ndarray] = {}  # camera -> all decoded frames, once cache_images() ran
        self.images_prepared_for = None  # the ProcessorConfig the cached images were prepared for (cache_images)
        tt = pq.read_table(str(self.root / "meta/tasks.parquet"))
        self.tasks = dict(zip(tt.column("task_index").to_pylist(), tt.column("task").to_pylist()))
        # episode end (exclusive row) for every row
        ends = np.zeros(len(self.action), dtype=np.int64)
        ep = self.episode_index
        change = np.nonzero(np.diff(ep))[0] + 1
        bounds = np.concatenate([[0], change, [len(ep)]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            ends[a:b] = b
        self.episode_end = ends
        stats_file = self.root / "meta" / NORM_STATS_FILE
        self.norm_stats = json.loads(stats_file.read_text()) if stats_file.is_file() else None

    def __len__(self) -> int:
        return len(self.action)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_handles"], d["_cache"], d["_pid"] = {}, {}, None
        return d

    def _row_group(self, g: int):
        import os

        import pyarrow.parquet as pq

        if self._pid != os.getpid():  # fresh handles after fork
            self._handles, self._cache, self._pid = {}, {}, os.getpid()
        if g not in self._cache:
            fi, rg = self._rg_where[g]
            if fi not in self._handles:
                self._handles[fi] = pq.ParquetFile(str(self.files[fi]))
            if len(self._cache) >= self.ROW_GROUP_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[g] = self._handles[fi].read_row_group(rg, columns=[IMAGE_PREFIX + c for c in self.cameras])
        return self._cache[g]

    def decoded_image_bytes(self, cameras: Optional[Sequence[str]] = None) -> int:
        """Memory that :meth:`cache_images` would take for ``cameras`` (all by default), in bytes."""
        total = 0
        for cam in cameras if cameras is not None else self.cameras:
            shape = self.info["features"][IMAGE_PREFIX + cam].get("shape") or [0, 0, 3]
            total += int(np.prod(shape)) * len(self)
        return total

    def cache_images(self, cameras: Optional[Sequence[str]] = None, progress: bool = False,
                     prepare_for=None) -> None:
        """Decode every image of ``cameras`` once and keep them in memory (uint8), so that training reads no
        parquet and decodes no PNG per sample. DataLoader workers forked afterwards share the arrays.
        ``prepare_for``: a model's ``ProcessorConfig``: each image is kept after
        :func:`~vla_adapter_ros.model.processor.prepare_image` (the deterministic resize/crop of the inference
        preprocessing, done once instead of per sample); items then say so (``images_prepared_for``)."""
        from ..model.processor import prepare_image

        from tqdm import tqdm

        cams = list(cameras) if cameras is not None else list(self.cameras)
        arrays: Dict[str, np.ndarray] = {}
        bar = tqdm(total=len(self), desc="decoding images", unit="frame", disable=not progress, dynamic_ncols=True)
        for g in range(len(self._rg_where)):
            tab = self._row_group(g)
            start = int(self._rg_start[g])
            for cam in cams:
                for k, cell in enumerate(tab.column(IMAGE_PREFIX + cam).to_pylist()):
                    img = decode_png(cell["bytes"])
                    if prepare_for is not None:
                        img = prepare_image(img, prepare_for)
                    if cam not in arrays:
                        arrays[cam] = np.empty((len(self),) + img.shape, dtype=np.uint8)
                    if img.shape != arrays[cam].shape[1:]:
                        raise ConvertError(f"{self.root}: camera {cam!r} row {start + k}: image shape {img.shape} "
                                           f"differs from {arrays[cam].shape[1:]} (cannot cache)")
                    arrays[cam][start + k] = img
            bar.update(tab.num_rows)
        bar.close()
        self._images = arrays
        self.images_prepared_for = prepare_for if arrays else None

    def prepared_for(self, cameras: Sequence[str]):
        """The ProcessorConfig the images of ``cameras`` are kept prepared for, or None (as stored)."""
        if self.images_prepared_for is None:
            return None
        if not all(c in self._images for c in cameras):  # some prepared, some as stored: no consistent item
            raise ConvertError(f"{self.root}: cameras {[c for c in cameras if c not in self._images]} are not in "
                               "the prepared image cache (cache every camera an item reads)")
        return self.images_prepared_for

    def image(self, cam: str, row: int) -> np.ndarray:
        cached = self._images.get(cam)
        if cached is not None:
            return cached[row]
        g = int(np.searchsorted(self._rg_start, row, side="right") - 1)
        tab = self._row_group(g)
        return decode_png(tab.column(IMAGE_PREFIX + cam)[row - int(self._rg_start[g])].as_py()["bytes"])


class FrameDataset:
    """Map-style dataset (works with ``torch.utils.data.DataLoader``; picklable). See :func:`load_dataset`."""

    def __init__(self, frames: LeRobotFrames, chunk_len: int, cameras: Sequence[str]):
        self.frames, self.chunk_len, self.cameras = frames, int(chunk_len), list(cameras)
        self.info, self.norm_stats = frames.info, frames.norm_stats

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        frames = self.frames
        if i < 0:
            i += len(frames)
        if not 0 <= i < len(frames):
            raise IndexError(i)
        end = int(frames.episode_end[i])
        rows = np.arange(i, i + self.chunk_len)
        mask = rows < end
        rows = np.minimum(rows, end - 1)
        return {
            "images": [frames.image(c, i) for c in self.cameras],
            # the ProcessorConfig the images were prepared for (cache_images), None for the images as stored
            "images_prepared_for": frames.prepared_for(self.cameras),
            "instruction": frames.tasks[int(frames.task_index[i])],
            "proprio": frames.state[i].copy(),
            "actions": frames.action[rows].copy(),
            "action_mask": mask,
            "episode_index": int(frames.episode_index[i]),
            "frame_index": int(frames.frame_index[i]),
        }


def load_dataset(path: Union[str, Path], chunk_len: int = 8, cameras: Optional[Sequence[str]] = None) -> FrameDataset:
    """A map-style dataset over a converted dataset (usable with ``torch.utils.data.DataLoader``).
    Item ``i`` is a dict:

    * ``images``: list of HxWx3 uint8 arrays (camera order of ``cameras`` or the dataset's);
    * ``instruction``: str;
    * ``proprio``: float32 (P,);
    * ``actions``: float32 (chunk_len, A): actions i..i+chunk_len-1 of the same episode, padded at the
      episode end by repeating the last action;
    * ``action_mask``: bool (chunk_len,): False on padded steps;
    * ``episode_index``, ``frame_index``: int.
    """
    frames = LeRobotFrames(path)
    cams = list(cameras) if cameras is not None else frames.cameras
    unknown = [c for c in cams if c not in frames.cameras]
    if unknown:
        raise ConvertError(f"{path}: cameras {unknown} not in the dataset ({frames.cameras})")
    return FrameDataset(frames, chunk_len, cams)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = ConvertConfig()
    sim_cameras = ["/camera/agentview/image_raw", "/camera/wrist/image_raw"]  # what sim_node publishes

    class _Out(argparse.Action):  # OUT is named in the usage; args.bags still ends with it (BAG... OUT)
        def __call__(self, parser, namespace, values, option_string=None):
            namespace.out = values
            namespace.bags = [*(getattr(namespace, "bags", None) or []), values]

    parser.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 bag directories (one episode each)")
    parser.add_argument("out", action=_Out, metavar="OUT", help="dataset directory to write (LeRobot layout)")
    parser.add_argument("--config", help="yaml file with ConvertConfig keys (command-line options override it)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--cameras", nargs="+", metavar="TOPIC",
                        help=f"image topics, primary first (default: {' '.join(sim_cameras)}: the simulation's "
                             "cameras, as `collect` records them)")
    parser.add_argument("--camera-names", nargs="+", metavar="NAME",
                        help="dataset names of the cameras, in --cameras order (default: primary, wrist, cam2, ...)")
    parser.add_argument("--joint-states", dest="joint_state_topic", metavar="TOPIC",
                        help=f"sensor_msgs/JointState of the arm (default: {d.joint_state_topic})")
    parser.add_argument("--gripper-states", dest="gripper_state_topic", metavar="TOPIC",
                        help="separate JointState of the fingers (default: none, the fingers are in --joint-states)")
    parser.add_argument("--eef-pose", dest="eef_pose_topic", metavar="TOPIC",
                        help="geometry_msgs/PoseStamped of the tool (default: none, forward kinematics of the joints)")
    parser.add_argument("--command", dest="command_topic", metavar="TOPIC",
                        help="commanded joints (ActionChunk/JointTrajectory/Float64MultiArray), for --labels command "
                             "(default: none)")
    parser.add_argument("--labels", choices=["measured", "command"],
                        help=f"action = step to the next frame's measured state (default: {d.labels}; EEF deltas "
                             "sum to the real motion) or the command in effect until then (needs --command)")
    parser.add_argument("--gripper-command", dest="gripper_command_topic", metavar="TOPIC",
                        help="gripper command topic (Float64 0 open..1 closed, Bool, Float64MultiArray) for the "
                             "gripper column (default: none, the measured finger width)")
    parser.add_argument("--instruction-topic", dest="instruction_topic", metavar="TOPIC",
                        help="std_msgs/String topic with the instruction (default: none, the bag metadata)")
    parser.add_argument("--instruction", help="instruction for every bag (default: bag metadata)")
    parser.add_argument("--action-space", choices=ACTION_SPACES, help=f"action columns (default: {d.action_space})")
    parser.add_argument("--proprio-layout", choices=sorted(PROPRIO_LAYOUTS),
                        help=f"what the proprio vector holds (default: {d.proprio_layout})")
    parser.add_argument("--no-gripper", dest="gripper", action="store_const", const=False,
                        help="no gripper column in the action (default: one)")
    parser.add_argument("--clock", choices=["camera", "fixed"],
                        help=f"frame clock: the primary camera's stamps or a fixed --fps (default: {d.clock})")
    parser.add_argument("--fps", type=float,
                        help="frame rate of --clock fixed (default: 0, estimated from the camera stamps)")
    parser.add_argument("--time-source", choices=["header", "receive"],
                        help=f"message time: header stamps or receive time (default: {d.time_source})")
    parser.add_argument("--max-age", nargs="+", metavar="SOURCE=SECONDS",
                        help="per-source max age, sources camera, joints, pose, command, gripper_state (default: "
                             + " ".join(f"{k}={v}" for k, v in d.max_age.items()) + ")")
    parser.add_argument("--no-trim", dest="trim_idle", action="store_const", const=False,
                        help="keep idle frames at the start and end of an episode (default: trimmed)")
    parser.add_argument("--keep-static", action="store_const", const=True,
                        help="keep episodes in which nothing moves (default: left out, reported)")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"),
                        help="stored image size (default 224 224, the model's Lanczos resize); 0 0 = keep")
    parser.add_argument("--dataset-name", help=f"statistics key of the dataset (default: {d.dataset_name})")
    return parser


def config_from_args(args: argparse.Namespace) -> ConvertConfig:
    import yaml

    d: Dict[str, Any] = {}
    if getattr(args, "config", None):
        d.update(yaml.safe_load(Path(args.config).read_text()) or {})
    if "camera_topics" not in d and not getattr(args, "cameras", None):  # the command line's default cameras
        d["camera_topics"] = ["/camera/agentview/image_raw", "/camera/wrist/image_raw"]  # sim_node's topics
    mapping = {"cameras": "camera_topics", "camera_names": "camera_names"}
    for k in ("cameras", "camera_names", "joint_state_topic", "gripper_state_topic", "eef_pose_topic", "command_topic",
              "gripper_command_topic", "instruction_topic", "instruction", "action_space", "proprio_layout", "gripper", "labels",
              "clock", "fps", "time_source", "trim_idle", "keep_static", "image_size", "dataset_name"):
        v = getattr(args, k, None)
        if v is not None:
            if k == "image_size" and not any(v):
                v = None
            d[mapping.get(k, k)] = v
    if getattr(args, "max_age", None):
        ages = dict(d.get("max_age") or {})
        for item in args.max_age:
            name, _, val = item.partition("=")
            try:
                ages[name] = float(val)
            except ValueError:
                raise ConvertError(f"--max-age expects SOURCE=SECONDS, got {item!r}")
        d["max_age"] = ages
    return ConvertConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    if len(args.bags) < 2:
        print("convert: need at least one bag and the output directory", file=sys.stderr)
        return 2
    *bags, out = args.bags
    try:
        cfg = config_from_args(args)
        if cfg.command_topic and cfg.labels == "measured":
            print("convert: labels are the next measured state (the default); --command is used with --labels command",
                  flush=True)
        report = convert(bags, out, cfg, overwrite=args.overwrite, log=lambda s: print(s, flush=True))
    except ConvertError as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {report['converted']} episodes, {report['total_frames']} frames; "
          f"{report['failed']} bags failed; static: {len(report['static'])}")
    return 0 if report["failed"] == 0 else 3


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vla-adapter-ros convert", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
