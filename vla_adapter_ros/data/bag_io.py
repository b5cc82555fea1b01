"""Recording core: raw serialized ROS 2 messages -> one rosbag2 MCAP bag per episode.

Pure Python (``rosbags``); no rclpy. The ROS node subscribes with ``raw=True`` and hands every
message to :meth:`BagRecorder.write` as (topic, type name, CDR bytes, receive time in ns).

Episode layout on disk::

    <root>/<episode_name>/
        metadata.yaml          rosbag2 metadata (custom_data["vla_adapter_ros.episode"] = JSON)
        <episode_name>.mcap
        episode.yaml           sidecar copy of the episode metadata (readable without rosbags)

A bag being written is first created as ``<root>/.partial/<episode_name>`` (with ``episode.yaml`` written at
start) and moved on :meth:`BagRecorder.stop`, so a crash never leaves a half-written bag under the final
name. Such a cut-short bag (no metadata.yaml, no MCAP summary) is still read by :class:`BagSource`, which
salvages every complete message with its own MCAP record scan (:func:`scan_mcap`).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
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
        flush_period_s: float = 1.0,
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
        # rosbags keeps an MCAP chunk in memory until it holds 1 MiB; closing it every flush_period_s (of receive
        # time) bounds what a crash (kill -9) loses: scan_mcap salvages every chunk on disk (0 = rosbags' own)
        self.flush_period_s = float(flush_period_s)
        self._last_flush_ns: Optional[int] = None

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
            # the sidecar now, so that a recording cut short (crash, kill -9: no metadata.yaml) keeps its
            # instruction for `convert`; stop() rewrites it complete
            (partial / SIDECAR).write_text(yaml.safe_dump(meta.to_dict(), sort_keys=True))
            self._writer, self._meta, self._partial, self._final = writer, meta, partial, final
            self._conns, self._counts, self._last_flush_ns = {}, {}, None
            for topic, msgtype in self.topics.items():
                self._connection(topic, msgtype)
            if self.flush_period_s > 0:
                self._flush_chunk(close=False)  # the MCAP magic and header on disk now
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
            if self.flush_period_s > 0:
                if self._last_flush_ns is None:
                    self._last_flush_ns = int(t_ns)
                elif int(t_ns) - self._last_flush_ns >= self.flush_period_s * 1e9:
                    self._flush_chunk()
                    self._last_flush_ns = int(t_ns)
            return True

    def _flush_chunk(self, close: bool = True) -> None:
        """Write rosbags' pending MCAP chunk (``close``) to the file now and flush it (no-op for other storage
        or rosbags versions without these internals)."""
        storage = getattr(self._writer, "storage", None)
        chunk, bio = getattr(storage, "chunk", None), getattr(storage, "bio", None)
        if chunk is None or bio is None or not hasattr(storage, "close_chunk"):
            return
        try:
            if close and chunk.bio.tell():
                storage.close_chunk()
            bio.flush()
        except Exception as e:
            raise RecorderError(f"cannot write bag {self._partial}: {e}") from e

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
# reading: rosbags, else a salvage scan of the MCAP records (truncated recordings)
# ---------------------------------------------------------------------------------------------
MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_OP_DATA_END = 0x0F
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_MSG_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_CHUNK_HEAD = struct.Struct("<QQQI")  # start time, end time, uncompressed size, uncompressed crc


class BagReadError(RuntimeError):
    """A bag that neither rosbags nor the MCAP salvage scan can read (the message says why, in one line)."""


class _Invalid(Exception):
    """A record that cannot be parsed (the scan stops before it)."""


@dataclass
class McapScan:
    """What a salvage scan (:func:`scan_mcap`) found. ``complete``: every file ended with its data-end or
    footer record (nothing is lost); otherwise ``stop`` says where and why the scan stopped."""

    files: List[str] = field(default_factory=list)
    messages: int = 0  # complete messages on all topics (also the ones not asked for)
    topics: Dict[str, int] = field(default_factory=dict)  # topic -> complete messages
    types: Dict[str, str] = field(default_factory=dict)  # topic -> message type
    first_ns: Optional[int] = None  # log time range of the complete messages
    last_ns: Optional[int] = None
    complete: bool = True
    stop: str = ""

    @property
    def duration_s(self) -> float:
        return 0.0 if self.first_ns is None else (self.last_ns - self.first_ns) * 1e-9

    def summary(self) -> str:
        return (f"salvaged {self.messages} messages on {len(self.topics)} topics up to t={self.duration_s:.3f} s"
                + ("" if self.complete else "; the rest is lost"))


class _Cursor:
    """Little-endian reader over one record body; raises _Invalid past its end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Invalid(f"field of {n} bytes runs past the record end")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def string(self) -> str:
        try:
            return bytes(self.take(self.u32())).decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Invalid(f"bad string ({e})") from e


def _zstd_module():
    try:
        from compression import zstd  # type: ignore  # Python >= 3.14
    except ImportError:
        from backports import zstd  # type: ignore  # a dependency of rosbags
    return zstd


def _decompress(compression: str, data: memoryview, partial: bool) -> bytes:
    """Chunk records: '' (none), 'zstd' or 'lz4' (frame format). ``partial``: the compressed data is cut
    short; return what decompresses from it (possibly nothing)."""
    if compression == "":
        return bytes(data)
    if compression == "zstd":
        zstd = _zstd_module()
        return zstd.ZstdDecompressor().decompress(bytes(data)) if partial else zstd.decompress(bytes(data))
    if compression == "lz4":
        import lz4.frame  # a dependency of rosbags

        if partial:
            return lz4.frame.LZ4FrameDecompressor().decompress(bytes(data))
        return lz4.frame.decompress(bytes(data))
    raise _Invalid(f"unsupported chunk compression {compression!r}")


def _natural_key(p: Path):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.name)]


def mcap_files(bag: Union[str, Path]) -> List[Path]:
    """The .mcap file(s) of a bag: the file itself, or a directory's ``*.mcap`` in split order."""
    bag = Path(bag)
    if bag.is_file():
        return [bag]
    return sorted(bag.glob("*.mcap"), key=_natural_key) if bag.is_dir() else []


def scan_mcap(files: Union[str, Path, Iterable[Union[str, Path]]], topics: Optional[Iterable[str]] = None,
              scan: Optional[McapScan] = None):
    """Yield (topic, msgtype, log time ns, raw CDR bytes) of every complete message of MCAP file(s), in file
    order, reading records one by one (magic, then opcode u8 + length u64 + body; chunks with '', 'zstd'
    or 'lz4' compression). Needs no summary, footer or metadata.yaml: a recording cut short (``kill -9``,
    full disk) yields every message before the first truncated or invalid record, also those of a cut
    chunk. ``topics``: only these (the others are still counted). ``scan`` (an :class:`McapScan`) is
    filled in as the scan goes. Raises :class:`BagReadError` for a file that is not MCAP."""
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    scan = scan if scan is not None else McapScan()
    wanted = set(topics) if topics is not None else None
    for path in paths:
        scan.files.append(str(path))
        yield from _scan_file(path, wanted, scan)


def _scan_file(path: Path, wanted: Optional[set], scan: McapScan):
    import os
    import zlib

    schemas: Dict[int, str] = {}
    channels: Dict[int, Tuple[str, str]] = {}

    def records(buf: memoryview, base: int):
        """(opcode, body, offset) of the complete records in ``buf``; stops at a cut one."""
        pos = 0
        while pos < len(buf):
            if pos + 9 > len(buf):
                raise _Invalid(f"record cut at byte {base + pos}")
            op, n = buf[pos], _U64.unpack(buf[pos + 1:pos + 9])[0]
            if pos + 9 + n > len(buf):
                raise _Invalid(f"record cut at byte {base + pos}")
            yield op, buf[pos + 9:pos + 9 + n], base + pos
            pos += 9 + n

    def handle(op: int, body: memoryview, at: int):
        """Parse a data record; yields the message tuple for a Message record."""
        c = _Cursor(body)
        if op == _OP_SCHEMA:
            sid, name = c.u16(), c.string()
            c.string()  # encoding
            c.take(c.u32())  # definition
            schemas[sid] = name
        elif op == _OP_CHANNEL:
            cid, sid, topic = c.u16(), c.u16(), c.string()
            c.string()  # message encoding
            c.take(c.u32())  # metadata map
            channels[cid] = (topic, schemas.get(sid, ""))
        elif op == _OP_MESSAGE:
            if len(body) < _MSG_HEAD.size:
                raise _Invalid(f"message record at byte {at} is too short")
            cid, _seq, log_time, _pub = _MSG_HEAD.unpack(body[:_MSG_HEAD.size])
            if cid not in channels:
                raise _Invalid(f"message at byte {at} on unknown channel {cid}")
            topic, msgtype = channels[cid]
            scan.messages += 1
            scan.topics[topic] = scan.topics.get(topic, 0) + 1
            scan.types.setdefault(topic, msgtype)
            scan.first_ns = log_time if scan.first_ns is None else min(scan.first_ns, log_time)
            scan.last_ns = log_time if scan.last_ns is None else max(scan.last_ns, log_time)
            if wanted is None or topic in wanted:
                yield topic, msgtype, int(log_time), bytes(body[_MSG_HEAD.size:])

    def chunk(body: memoryview, at: int, cut: bool):
        c = _Cursor(body)
        try:
            _start, _end, size, crc = _CHUNK_HEAD.unpack(c.take(_CHUNK_HEAD.size))  # size: uncompressed
            compression = c.string()
            n = c.u64()
        except _Invalid:
            raise _Invalid(f"chunk at byte {at} cut in its header")
        data = body[c.pos:c.pos + n]
        if not cut and len(data) < n:
            raise _Invalid(f"chunk at byte {at} is shorter than its records")
        try:
            raw = _decompress(compression, data, partial=cut)
        except _Invalid:
            raise
        except Exception as e:
            raise _Invalid(f"chunk at byte {at} does not decompress ({type(e).__name__}: {e})") from e
        if not cut and (len(raw) != size or (crc and zlib.crc32(raw) != crc)):
            raise _Invalid(f"chunk at byte {at} fails its size or CRC check")
        try:
            for op, rec, rat in records(memoryview(raw), 0):
                yield from handle(op, rec, rat)
        except _Invalid as e:
            if cut:  # the usual end of a cut chunk: a record of it is incomplete
                return
            raise _Invalid(f"chunk at byte {at}: {e}") from e

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(MCAP_MAGIC))
        if magic != MCAP_MAGIC:
            raise BagReadError(f"{path}: not an MCAP file (it starts with {magic[:8]!r}, not {MCAP_MAGIC!r})")
        pos = len(MCAP_MAGIC)
        while True:
            head = f.read(9)
            if len(head) < 9:
                if head or pos < size:
                    scan.stop = f"{path.name}: record cut at byte {pos} of {size}"
                else:
                    scan.stop = f"{path.name}: ends at byte {size} without a footer"
                scan.complete = False
                return
            op, n = head[0], _U64.unpack(head[1:])[0]
            if op == 0:  # reserved opcode: zero-filled tail or garbage
                scan.stop, scan.complete = f"{path.name}: invalid record (opcode 0) at byte {pos}", False
                return
            if op in (_OP_FOOTER, _OP_DATA_END):
                return
            cut = pos + 9 + n > size
            if op not in (_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK):
                if cut:
                    scan.stop, scan.complete = f"{path.name}: record cut at byte {pos} of {size}", False
                    return
                f.seek(n, 1)  # header, indexes, attachments, metadata, statistics: not needed
                pos += 9 + n
                continue
            body = memoryview(f.read(min(n, size - pos - 9)))
            try:
                if op == _OP_CHUNK:
                    yield from chunk(body, pos, cut)
                elif not cut:
                    yield from handle(op, body, pos)
            except _Invalid as e:
                scan.stop, scan.complete = f"{path.name}: {e}", False
                return
            if cut:
                scan.stop, scan.complete = f"{path.name}: record cut at byte {pos} of {size}", False
                return
            pos += 9 + n


class BagSource:
    """The messages of one recorded bag as (topic, msgtype, t_ns, raw CDR bytes), the one read path of
    ``convert``: rosbags when it reads the bag (a bag directory with metadata.yaml, or an .mcap file with
    its summary); otherwise, for a bag cut short (``kill -9`` of the recorder leaves
    ``.partial/<episode>/<episode>.mcap`` without metadata.yaml, footer or summary), the salvage scan
    :func:`scan_mcap`. ``salvaged`` tells which; after a :meth:`messages` pass, ``scan`` holds what the
    salvage scan found (``scan.complete`` False: the bag is truncated)."""

    def __init__(self, bag: Union[str, Path]):
        self.path = Path(bag)
        self.reason = ""  # why rosbags did not read it
        self.scan: Optional[McapScan] = None
        self._rosbags_path: Optional[Path] = None
        self._files: List[Path] = []
        if not self.path.exists():
            raise BagReadError(f"{self.path}: no such bag")
        target = self.path if (self.path.is_file() or (self.path / "metadata.yaml").is_file()) else None
        if target is None:
            files = mcap_files(self.path)
            target = files[0] if len(files) == 1 else None
            self.reason = "no metadata.yaml"
        if target is not None:
            try:
                from rosbags.rosbag2 import Reader

                with Reader(target) as reader:
                    self.topic_types: Dict[str, str] = {c.topic: c.msgtype for c in reader.connections}
                self._rosbags_path = target
                return
            except Exception as e:  # truncated / corrupt: many exception types
                self.reason = " ".join(f"{type(e).__name__}: {e}".split())
        self._files = mcap_files(self.path)
        if not self._files:
            raise BagReadError(f"{self.path}: cannot read bag ({self.reason or 'no .mcap file'})")
        with open(self._files[0], "rb") as f:
            magic = f.read(len(MCAP_MAGIC))
        if len(magic) < len(MCAP_MAGIC) and MCAP_MAGIC.startswith(magic):  # empty, or cut inside the magic
            raise BagReadError(f"{self.path}: cannot read bag: {self._files[0].name} has {len(magic)} bytes (the "
                               f"recording was cut before anything reached the disk)")
        if magic != MCAP_MAGIC:
            raise BagReadError(f"{self._files[0]}: cannot read bag ({self.reason}) and it is not an MCAP file")
        self.topic_types = {}

    @property
    def salvaged(self) -> bool:
        return self._rosbags_path is None

    @property
    def topics(self) -> Optional[Dict[str, str]]:
        """topic -> message type; for a salvaged bag known only after a :meth:`messages` pass (else None)."""
        if self.salvaged and self.scan is None:
            return None
        return dict(self.topic_types)

    def messages(self, topics: Optional[Iterable[str]] = None):
        wanted = set(topics) if topics is not None else None
        if self._rosbags_path is not None:
            from rosbags.rosbag2 import Reader

            with Reader(self._rosbags_path) as reader:
                conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
                for conn, t, raw in reader.messages(connections=conns):
                    yield conn.topic, conn.msgtype, int(t), raw
            return
        scan = McapScan()
        yield from scan_mcap(self._files, wanted, scan)
        self.scan = scan
        self.topic_types = dict(scan.types)

    def warning(self) -> str:
        """One line about a salvaged bag ('' for a bag rosbags read, or before a :meth:`messages` pass)."""
        if self.scan is None:
            return ""
        if self.scan.complete:
            return f"bag {self.path} read without rosbags ({self.reason}): {self.scan.summary()}"
        return f"bag {self.path} is truncated: {self.scan.summary()}"


def read_raw_messages(bag_dir: Union[str, Path], topics: Optional[Iterable[str]] = None):
    """Yield (topic, msgtype, t_ns, raw bytes) of a bag: in time order when rosbags reads it, else (a
    truncated recording) every complete message salvaged from its .mcap file(s), in file order."""
    yield from BagSource(bag_dir).messages(topics)
