"""The executor node with a slow chunk conversion, for test_executor_node.py.

Every chunk first costs SLOW_CHUNK_S seconds (default 1.0) of pure-Python work (holding the GIL
between switches, as numpy-heavy IK does) before the core's real `on_chunk`: long enough that a
control loop which waited for the conversion would visibly stop sending commands.
"""

import os
import sys
import time

from vla_adapter_ros.control import executor_core
from vla_adapter_ros.nodes import executor_node

SLOW_S = float(os.environ.get("SLOW_CHUNK_S", "1.0"))


def _slow(cls):
    real = cls.on_chunk

    def on_chunk(self, chunk, now):
        end = time.perf_counter() + SLOW_S
        while time.perf_counter() < end:
            sum(range(1000))
        return real(self, chunk, now)

    cls.on_chunk = on_chunk


_slow(executor_core.ExecutorCore)

if __name__ == "__main__":
    sys.exit(executor_node.main())
