"""SIGINT is how the supervisor and ros2 launch stop a node: it must give a clean exit (code 0, no
traceback) at any time, including right after start-up and when the parent ignores SIGINT (a
non-interactive shell's background job, e.g. `cmd &` in a script or CI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ros]


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_right_after_start_gives_a_clean_exit(ros_domain):
    proc = subprocess.Popen([sys.executable, "-m", "vla_adapter_ros.nodes.executor_node"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ignore_sigint, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready:" in line or not line:
                break
        assert any("ready:" in x for x in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        rest = proc.stdout.read()
        assert code == 0 and "Traceback" not in rest, "".join(lines) + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
