"""Recording core: raw serialized ROS 2 messages -> one rosbag2 MCAP bag per episode.

Pure Python (``rosbags``); no rclpy. The ROS node subscribes with ``raw=True`` and hands every
message to :meth:`BagRecorder.write` as (topic, type name, CDR bytes, receive time in ns).

Episode layout on disk::

    <root>/<episode_name>/
        metadata.yaml          rosbag2 metadata (custom_data["vla_adapter_ros.episode"] = JSON)
        <episode_name>.mcap
        episode.yaml           sidecar copy of the episode metadata (readable without rosbags)

A bag being written is first created as ``<root>/.partial/<episode_name>`` and moved on
:meth:`BagRecorder.stop`, so a crash never leaves a half-written bag under the final name.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import yaml

EPISODE_KEY = "vla_adapter_ros.episode"
SIDECAR = "episode.yaml"
PACKAGE = "vla_adapter_ros"
# msg/ of this package (repository checkout or installed share dir)
_DEFAULT_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"


class RecorderError(RuntimeError):
    """Misuse of the recorder (start twice, write while stopped, ...) or a storage failure."""


# ---------------------------------------------------------------------------------------------
# type store
# ---------------------------------------------------------------------------------------------
def find_msg_dir() -> Optional[Path]:
    """msg/ of this package: the source checkout, else the ament share directory if installed."""
    if _DEFAULT_MSG_DIR.is_dir():
        return _DEFAULT_MSG_DIR
    try:  # installed package without the source tree
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        p = Path(get_package_share_directory(PACKAGE)) / "msg"
        return p if p.is_dir() else None
    except Exception:
        return None


def make_typestore(msg_dirs: Iterable[Union[str, Path]] = (), package: str = PACKAGE, include_default: bool = True):
    """A rosbags typestore with the ROS 2 Kilted standard types plus every ``*.msg`` found in
    ``msg_dirs`` (registered as ``<package>/msg/<Name>``)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    # the project runs on ROS 2 Kilted (requirements/ros-kilted.txt); older rosbags lack that store
    store = getattr(Stores, "ROS2_KILTED", None) or Stores.ROS2_HUMBLE
    ts = get_typestore(store)
    dirs = [Path(d) for d in msg_dirs]
    if include_default and not dirs:
        d = find_msg_dir()
        if d is not None:
            dirs.append(d)
    types: Dict[str, Any] = {}
    for d in dirs:
        for f in sorted(Path(d).glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{package}/msg/{f.stem}"))
    if types:
        ts.register(types)
    return ts


def normalize_type_name(msgtype: str) -> str:
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' -> 'sensor_msgs/msg/Image'."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return msgtype.strip()


# ---------------------------------------------------------------------------------------------
# freshness gate
# ---------------------------------------------------------------------------------------------
def check_fresh(
    last_seen: Mapping[str, Optional[float]],
    now: float,
    max_age: Union[float, Mapping[str, float]],
    required: Optional[Iterable[str]] = None,
) -> List[str]:
    """Topics that are silent: never seen (None / missing) or last seen more than ``max_age``
    seconds before ``now``. ``max_age`` is one number or a per-topic mapping; ``required`` lists the
    topics to check (default: the keys of ``last_seen``). Returns the silent topics, sorted."""
    topics = list(required) if required is not None else list(last_seen)
    silent = []
    for t in topics:
        seen = last_seen.get(t)
        limit = max_age[t] if isinstance(max_age, Mapping) else max_age
        if seen is None or not (now - float(seen) <= float(limit)):
            silent.append(t)
    return sorted(silent)


# ---------------------------------------------------------------------------------------------
# episode metadata
# ---------------------------------------------------------------------------------------------
@dataclass
class EpisodeMetadata:
    instruction: str
    episode_name: str = ""  # default: episode_<UTC time>
    operator: str = ""
    robot: str = "franka"
    config: Dict[str, Any] = field(default_factory=dict)  # recorder/launch configuration to keep
    extra: Dict[str, Any] = field(default_factory=dict)
    success: Optional[bool] = None  # filled at stop()
    start_time_ns: int = 0
    stop_time_ns: int = 0
    message_counts: Dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EpisodeMetadata":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


_NAME_OK = re.compile(r"^[A-Za-z0-9_.\-]+$")


def read_episode_metadata(bag_dir: Union[str, Path]) -> Dict[str, Any]:
    """Episode metadata of a recorded bag: rosbag2 ``custom_data`` first, else the sidecar yaml.
    Returns {} for a bag recorded by other tools."""
    bag_dir = Path(bag_dir)
    meta = bag_dir / "metadata.yaml"
    if meta.is_file():
        try:
            d = yaml.safe_load(meta.read_text()) or {}
            custom = (d.get("rosbag2_bagfile_information") or {}).get("custom_data") or {}
            if EPISODE_KEY in custom:
                return json.loads(custom[EPISODE_KEY])
        except Exception:
            pass
    side = bag_dir / SIDECAR
    if side.is_file():
        return yaml.safe_load(side.read_text()) or {}
    return {}


# ---------------------------------------------------------------------------------------------
# recorder
# ---------------------------------------------------------------------------------------------
class BagRecorder:
    """Writes one rosbag2 bag (MCAP by default) per episode from raw CDR messages.

    Thread-safe: :meth:`write` may be called from several executor threads.

    >>> rec = BagRecorder("/data/bags")
    >>> rec.start(EpisodeMetadata(instruction="pick up the cube"))
    >>> rec.write("/joint_states", "sensor_msgs/msg/JointState", raw_bytes, t_ns)
    >>> rec.stop(success=True)   # or rec.discard()
    """

    def __init__(
        self,
        root: Union[str, Path],
        topics: Optional[Mapping[str, str]] = None,
        msg_dirs: Iterable[Union[str, Path]] = (),
        storage: str = "mcap",
        typestore: Any = None,
    ):
        from rosbags.rosbag2 import StoragePlugin

        self.root = Path(root)
        self.topics = {t: normalize_type_name(m) for t, m in (topics or {}).items()}
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise RecorderError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self._plugin = plugins[storage]
        self.typestore = typestore if typestore is not None else make_typestore(msg_dirs)
        self._lock = threading.Lock()
        self._writer = None
        self._conns: Dict[str, Any] = {}
        self._counts: Dict[str, int] = {}
        self._meta: Optional[EpisodeMetadata] = None
        self._partial: Optional[Path] = None
        self._final: Optional[Path] = None
        self.last_seen: Dict[str, float] = {}  # topic -> receive time (s) of the last message, recording or not

    # ----- state -----
    @property
    def recording(self) -> bool:
        return self._writer is not None

    @property
    def episode_dir(self) -> Optional[Path]:
        """Final directory of the current (or last stopped) episode."""
        return self._final

    @property
    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def observe(self, topic: str, t_ns: int) -> None:
        """Note that ``topic`` delivered a message at ``t_ns`` (for :func:`check_fresh`)."""
        self.last_seen[topic] = t_ns * 1e-9

    # ----- episode control -----
    def start(self, metadata: Union[EpisodeMetadata, Mapping[str, Any]], now_ns: Optional[int] = None) -> Path:
        """Open a new bag for an episode; returns its final directory. Raises RecorderError if one is open,
        the name is invalid or the directory exists."""
        from rosbags.rosbag2 import Writer

        meta = metadata if isinstance(metadata, EpisodeMetadata) else EpisodeMetadata.from_dict(metadata)
        if not isinstance(meta.instruction, str) or not meta.instruction.strip():
            raise RecorderError("episode metadata needs a non-empty instruction")
        now_ns = time.time_ns() if now_ns is None else int(now_ns)
        with self._lock:
            if self._writer is not None:
                raise RecorderError(f"already recording {self._final}")
            if not meta.episode_name:
                meta.episode_name = "episode_" + time.strftime("%Y%m%d_%H%M%S", time.gmtime(now_ns * 1e-9)) + (
                    f"_{(now_ns // 1_000_000) % 1000:03d}"
                )
            if not _NAME_OK.match(meta.episode_name):
                raise RecorderError(f"invalid episode name {meta.episode_name!r} (letters, digits, _ . - only)")
            final = self.root / meta.episode_name
            partial = self.root / ".partial" / meta.episode_name
            if final.exists():
                raise RecorderError(f"{final} already exists")
            if partial.exists():
                shutil.rmtree(partial)
            partial.parent.mkdir(parents=True, exist_ok=True)
            meta.start_time_ns = now_ns
            writer = Writer(partial, version=9, storage_plugin=self._plugin)
            try:
                writer.open()
            except Exception as e:
                raise RecorderError(f"cannot open bag {partial}: {e}") from e
            self._writer, self._meta, self._partial, self._final = writer, meta, partial, final
            self._conns, self._counts = {}, {}
            for topic, msgtype in self.topics.items():
                self._connection(topic, msgtype)
            return final

    def _connection(self, topic: str, msgtype: str):
        conn = self._conns.get(topic)
        if conn is None:
            msgtype = normalize_type_name(msgtype)
            if msgtype not in self.typestore.types:
                raise RecorderError(f"{topic}: message type {msgtype!r} is not known to the type store")
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._conns[topic] = conn
            self._counts.setdefault(topic, 0)
        elif conn.msgtype != normalize_type_name(msgtype):
            raise RecorderError(f"{topic}: type changed from {conn.msgtype} to {msgtype}")
        return conn

    def write(self, topic: str, msgtype: str, data: Union[bytes, memoryview], t_ns: int) -> bool:
        """Record one serialized (CDR) message received at ``t_ns``; returns False (and only notes
        the time for the freshness gate) when no episode is open."""
        self.observe(topic, t_ns)
        with self._lock:
            if self._writer is None:
                return False
            if self.topics and topic not in self.topics:
                return False
            conn = self._connection(topic, msgtype)
            self._writer.write(conn, int(t_ns), bytes(data))
            self._counts[topic] += 1
            return True

    def _close(self) -> Tuple[EpisodeMetadata, Path, Path]:
        writer, meta, partial, final = self._writer, self._meta, self._partial, self._final
        self._writer = None
        assert meta is not None and partial is not None and final is not None
        return writer, meta, partial, final

    def stop(self, success: Optional[bool] = None, extra: Optional[Mapping[str, Any]] = None,
             now_ns: Optional[int] = None) -> Path:
        """Close the bag, store the metadata and move it to its final name; returns that directory."""
        with self._lock:
            if self._writer is None:
                raise RecorderError("not recording")
            writer, meta, partial, final = self._close()
            meta.stop_time_ns = time.time_ns() if now_ns is None else int(now_ns)
            meta.success = success
            meta.message_counts = dict(self._counts)
            if extra:
                meta.extra.update(dict(extra))
            text = json.dumps(meta.to_dict(), sort_keys=True)
            try:
                writer.set_custom_data(EPISODE_KEY, text)
                writer.close()
            except Exception as e:
                raise RecorderError(f"cannot close bag {partial}: {e}") from e
            (partial / SIDECAR).write_text(yaml.safe_dump(meta.to_dict(), sort_keys=True))
            partial.rename(final)
            return final

    def discard(self) -> Optional[Path]:
        """Abort the current episode and delete its bag. Returns the deleted path (None if idle)."""
        with self._lock:
            if self._writer is None:
                return None
            writer, meta, partial, final = self._close()
            try:
                writer.close()
            except Exception:
                pass
            shutil.rmtree(partial, ignore_errors=True)
            self._final = None
            return final

    def discard_last(self) -> Optional[Path]:
        """Delete the last stopped episode (e.g. operator marks it bad after stopping)."""
        with self._lock:
            if self._writer is not None or self._final is None or not self._final.exists():
                return None
            p = self._final
            shutil.rmtree(p)
            self._final = None
            return p


# ---------------------------------------------------------------------------------------------
# reading helpers (used by convert and tests)
# ---------------------------------------------------------------------------------------------
def read_raw_messages(bag_dir: Union[str, Path], topics: Optional[Iterable[str]] = None):
    """Yield (topic, msgtype, t_ns, raw bytes) of a bag in time order."""
    from rosbags.rosbag2 import Reader

    with Reader(Path(bag_dir)) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in set(topics)]
        for conn, t, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, t, raw
