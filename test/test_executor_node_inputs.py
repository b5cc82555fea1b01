"""Executor node input handling, in-process: the joint-state cache, the chunk worker, and the node's
tick / gripper guards on a real ExecutorNode object (constructed in this process, never spun).

The same behaviour over real middleware in separate processes: test_executor_node.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from vla_adapter_ros.control import EEF_DELTA, JOINT_POSITION, Chunk, load_robot_limits  # noqa: E402
from vla_adapter_ros.nodes.executor_node import SUPERSEDED, ChunkWorker, ExecutorNode, JointStateCache  # noqa: E402

LIMITS = load_robot_limits("fr3")
NAMES = list(LIMITS.joint_names)
READY = np.array(LIMITS.start_pose)


# ---------------------------------------------------------------------------- JointStateCache
def test_cache_needs_every_arm_joint_and_reports_the_oldest_receive_time():
    cache = JointStateCache(NAMES)
    q, oldest = cache.update(NAMES[:5], READY[:5], 1.0)
    assert q is None and np.isnan(oldest)  # joints 6-7 never received
    q, oldest = cache.update(NAMES[5:] + ["fr3_finger_joint1"], list(READY[5:]) + [0.04], 2.0)
    assert np.allclose(q, READY) and oldest == 1.0  # joints 1-5 are from t=1
    q, oldest = cache.update(NAMES, READY + 0.1, 3.0)
    assert np.allclose(q, READY + 0.1) and oldest == 3.0
    # joints 1-5 only, later: 6-7 keep their old receive time, so the state is as old as they are
    q, oldest = cache.update(NAMES[:5], READY[:5], 10.0)
    assert oldest == 3.0
    # a message without arm joints refreshes nothing and reports nothing
    q, oldest = cache.update(["fr3_finger_joint1", "fr3_finger_joint2"], [0.04, 0.04], 11.0)
    assert q is None


def test_cache_ignores_unknown_names_and_malformed_messages():
    cache = JointStateCache(NAMES)
    cache.update(NAMES, READY, 1.0)
    unknown = [f"other_joint_{i}" for i in range(10_000)]
    q, _ = cache.update(unknown, np.zeros(10_000), 2.0)
    assert q is None
    assert len(cache) == 7 and cache.positions.shape == (7,) and cache.received.shape == (7,)
    assert len(vars(cache)) == 5 and len(cache._index) == 7  # nothing grew with the unknown names
    # lengths differ: nothing is refreshed, the message is counted
    q, oldest = cache.update(NAMES, READY[:3], 5.0)
    assert q is None and np.isnan(oldest) and cache.malformed == 1
    assert np.all(cache.received == 1.0) and np.allclose(cache.positions, READY)


def test_cache_keeps_a_non_finite_value_for_the_core_to_reject():
    cache = JointStateCache(NAMES)
    bad = READY.copy()
    bad[2] = np.nan
    q, oldest = cache.update(NAMES, bad, 1.0)
    assert q is not None and np.isnan(q[2]) and oldest == 1.0


# ---------------------------------------------------------------------------- ChunkWorker
def _chunk(sequence, rows=4):
    return Chunk(0.0, 0.05, JOINT_POSITION, NAMES, np.tile(READY, (rows, 1)), None, sequence)


def _stop_chunk(sequence):
    return Chunk(0.0, 0.05, JOINT_POSITION, NAMES, np.zeros((0, 7)), None, sequence)


def test_worker_keeps_only_the_newest_pending_chunk_and_never_drops_a_pending_stop():
    release = threading.Event()
    processed, dropped, errors = [], [], []

    def process(chunk):
        processed.append(chunk.sequence)
        if chunk.sequence == 1:
            assert release.wait(10)

    worker = ChunkWorker(process, lambda c: dropped.append(c.sequence), lambda c, e: errors.append(e))
    try:
        worker.submit(_chunk(1))
        deadline = time.monotonic() + 10
        while processed != [1] and time.monotonic() < deadline:  # 1 is running (blocked)
            time.sleep(0.01)
        worker.submit(_chunk(2))
        worker.submit(_chunk(3))  # 2 is superseded
        worker.submit(_stop_chunk(4))  # 3 is superseded by a stop
        worker.submit(_chunk(5))  # the stop stays, 5 waits behind it
        worker.submit(_chunk(6))  # 5 is superseded, the stop still stays
        assert dropped == [2, 3, 5]
        release.set()
        deadline = time.monotonic() + 10
        while not worker.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processed == [1, 4, 6] and not errors
    finally:
        release.set()
        assert worker.stop(timeout=5)
    assert not worker.submit(_chunk(7))


def test_worker_survives_an_exception_and_stops_while_busy():
    errors, processed = [], []
    started, release = threading.Event(), threading.Event()

    def process(chunk):
        if chunk.sequence == 1:
            raise RuntimeError("boom")
        started.set()
        release.wait(10)
        processed.append(chunk.sequence)

    worker = ChunkWorker(process, lambda c: None, lambda c, e: errors.append((c.sequence, repr(e))))
    worker.submit(_chunk(1))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:  # 1 raised; the thread goes on
        time.sleep(0.01)
    worker.submit(_chunk(2))
    assert started.wait(10)
    assert errors == [(1, "RuntimeError('boom')")]
    assert not worker.stop(timeout=0.1)  # still busy: the join times out, nothing hangs
    release.set()
    worker.thread.join(10)
    assert processed == [2] and not worker.thread.is_alive()


# ---------------------------------------------------------------------------- the node object
@pytest.fixture
def node(rclpy_context):
    """An ExecutorNode in this process (FR3, 100 Hz, gripper on a topic), never spun."""
    from rclpy.parameter import Parameter

    made = ExecutorNode(context=rclpy_context, parameter_overrides=[
        Parameter("gripper_output", value="topic"), Parameter("control_rate_hz", value=100.0),
        Parameter("require_start_pose", value=False)])
    yield made
    made.shutdown()
    made.destroy_node()


def _enable(node):
    now = node._now()
    for k in range(5, -1, -1):  # a few fresh states of an arm at rest
        node.core.on_joint_state(READY, now - 0.01 * k)
    ok, message = node.core.enable(node._now())
    assert ok, message


@pytest.mark.ros
def test_chunk_is_converted_on_the_worker_thread_not_in_the_callback(node):
    """The subscription callback returns at once; the core sees the chunk on another thread."""
    _enable(node)
    seen, release = [], threading.Event()
    real_on_chunk = node.core.on_chunk

    def slow_on_chunk(chunk, now):
        seen.append(threading.current_thread())
        assert release.wait(10)
        return real_on_chunk(chunk, now)

    node.core.on_chunk = slow_on_chunk
    try:
        _convert_off_thread(node, seen)
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while not node.chunk_worker.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert node.core.chunks_accepted == 1, node.core.status(node._now())


def _convert_off_thread(node, seen):
    from vla_adapter_ros.msg import ActionChunk

    rows = np.zeros((8, 6))
    rows[:, 0] = 0.0005
    msg = ActionChunk(action_space=EEF_DELTA, horizon=8, action_dim=6, dt=0.01, sequence=1)
    msg.actions = rows.reshape(-1).tolist()
    msg.header.stamp = node.get_clock().now().to_msg()
    start = time.monotonic()
    node._on_chunk(msg)  # as the executor would call it; must not wait for the conversion
    assert time.monotonic() - start < 5.0, "the callback waited for the conversion"
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and seen[0] is not threading.current_thread() and seen[0] is node.chunk_worker.thread
    # ticks run meanwhile (the conversion is still blocked) and still send commands
    sent = []
    node._publish_command = sent.append
    for _ in range(3):
        node._tick()
    assert len(sent) == 3


@pytest.mark.ros
def test_superseded_chunk_is_counted_as_rejected(node):
    from vla_adapter_ros.msg import ActionChunk

    _enable(node)
    release = threading.Event()
    real_on_chunk = node.core.on_chunk

    def slow_on_chunk(chunk, now):
        release.wait(10)
        return real_on_chunk(chunk, now)

    node.core.on_chunk = slow_on_chunk

    def message(sequence):
        msg = ActionChunk(action_space=JOINT_POSITION, names=NAMES, horizon=4, action_dim=7, dt=0.05,
                          sequence=sequence)
        msg.actions = np.tile(READY, (4, 1)).reshape(-1).tolist()
        msg.header.stamp = node.get_clock().now().to_msg()
        return msg

    try:
        for sequence in (1, 2, 3):  # 1 runs (blocked); 2 waits, then 3 supersedes it
            node._on_chunk(message(sequence))
            time.sleep(0.05)
        status = node.core.status(node._now())
        assert status.chunks_rejected == 1 and status.last_chunk_reject_reason == SUPERSEDED
    finally:
        release.set()


@pytest.mark.ros
def test_a_tick_that_raises_latches_estop_and_sends_nothing(node):
    _enable(node)
    sent = []
    node._publish_command = sent.append
    node._tick()
    assert len(sent) == 1
    real_tick = node.core.tick
    calls = []

    def broken_tick(now):
        calls.append(now)
        if len(calls) == 1:
            raise ZeroDivisionError("broken")
        return real_tick(now)

    node.core.tick = broken_tick
    node._tick()  # must not raise
    assert len(sent) == 1, "nothing is sent on the failing tick"
    assert node.core.state.value == "estop"
    assert node.core.estop_reason == "internal error in tick: ZeroDivisionError('broken')"
    node._tick()  # the next ticks continue: the core brakes
    assert len(sent) == 2 and sent[-1].holding


@pytest.mark.ros
def test_gripper_is_not_sent_in_estop(node):
    from vla_adapter_ros.control.gripper import CLOSED, GripperEvent

    published = []

    class Recorder:
        def publish(self, msg):
            published.append(msg.data)

    node.gripper_pub = Recorder()
    event = GripperEvent(CLOSED, 1.0, 0.0)
    node._send_gripper(event)
    assert published == [1.0]
    node.core.estop("test")
    node._send_gripper(event)
    assert published == [1.0], "no gripper goal while in estop"


@pytest.mark.ros
def test_service_handler_answers_instead_of_raising(node):
    from std_srvs.srv import Trigger

    def broken():
        raise RuntimeError("no")

    reply = node._trigger_service(broken)(Trigger.Request(), Trigger.Response())
    assert not reply.success and "internal error" in reply.message
