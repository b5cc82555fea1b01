"""A node stack run by the supervisor on a background thread, plus one in-process client node that
drives it over ROS (what `vla-adapter-ros demo` and `collect` do).

    with StackSession(specs, log_path, "vla_demo") as session:
        client = session.node.create_client(...)
        session.spin_until(client.service_is_ready, 60)
        reply = session.call(client, request)

Waiting stops early when a node of the stack exits (`stack_exited`) or, if given, when the
`interrupted` event is set. Closing shuts the client down, then stops and reaps every node.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from vla_adapter_ros.supervisor import NodeSpec, Supervisor


PRIVATE_DOMAINS = (100, 200)  # [first, last) ROS_DOMAIN_ID picked for a self-contained stack


def isolate_ros_graph(environ=os.environ) -> str:
    """Keep a self-contained stack (demo, collect, libero-eval) to itself: discovery on this machine only
    and, unless the user chose a ROS_DOMAIN_ID, a private one. Two stacks on one machine would otherwise
    mix their topics, and a simulation's commands (e.g. /fr3_arm_controller/joint_trajectory) could reach
    a real controller running on the same computer. Returns a line saying which domain is used."""
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if environ.get("ROS_DOMAIN_ID", "").strip():
        return f"ROS_DOMAIN_ID={environ['ROS_DOMAIN_ID']} (from the environment)"
    first, last = PRIVATE_DOMAINS
    environ["ROS_DOMAIN_ID"] = str(first + os.getpid() % (last - first))
    return (f"ROS_DOMAIN_ID={environ['ROS_DOMAIN_ID']} (private to this run; export ROS_DOMAIN_ID to choose one, "
            "e.g. to watch it with ros2 topic echo)")


class StackSession:
    def __init__(self, specs: list[NodeSpec], log_path: Path, client_name: str, extra_params=(),
                 log_mode: str = "w", interrupted: threading.Event | None = None, rclpy_init_kwargs=None):
        self.log_path = Path(log_path)
        self.log = open(self.log_path, log_mode)
        self.supervisor = Supervisor(specs, extra_params=list(extra_params), out=self.log)
        self.interrupted = interrupted
        self._client_name = client_name
        self._init_kwargs = dict(rclpy_init_kwargs or {})
        self._exit: dict[str, int] = {}
        self._thread = threading.Thread(target=lambda: self._exit.setdefault("code", self.supervisor.run()),
                                        daemon=True)
        self.node = None
        self.executor = None

    def __enter__(self) -> "StackSession":
        return self.start()

    def start(self) -> "StackSession":
        """Start the stack and the client node (pair with `close()`, or use `with`)."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._thread.start()
        rclpy.init(**self._init_kwargs)
        self.node = rclpy.create_node(self._client_name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    @property
    def stack_exited(self) -> bool:
        """A node of the stack exited (the supervisor then stops the rest)."""
        return "code" in self._exit

    def spin_until(self, predicate, timeout: float, interruptible: bool = True) -> bool:
        """Process client callbacks until `predicate()` holds; False on timeout, stack exit or
        (if `interruptible`) interruption."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.stack_exited or (interruptible and self.interrupted is not None and self.interrupted.is_set()):
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def call(self, client, request, timeout: float = 30.0, interruptible: bool = True):
        """Call a service and return its response; RuntimeError if none comes in time."""
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout, interruptible):
            raise RuntimeError(f"{client.srv_name}: no answer within {timeout} s")
        return future.result()

    def close(self, stop_timeout: float = 60.0) -> None:
        import rclpy

        if self.node is not None:
            self.node.destroy_node()
            self.executor.shutdown()
            self.node = None
        rclpy.try_shutdown()
        self.supervisor.request_stop()
        if self._thread.is_alive():
            self._thread.join(stop_timeout)
        self.log.close()
