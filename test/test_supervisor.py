"""`vla-adapter-ros up`: every child gets the signal, escalation, stop-all when one dies, reaping."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vla_adapter_ros.supervisor import StackError, Supervisor, load_stack

PEERS = Path(__file__).resolve().parent / "peers"


def _stack(tmp_path, nodes_yaml):
    (tmp_path / "a.yaml").write_text("a:\n  ros__parameters:\n    x: 1\n")
    path = tmp_path / "stack.yaml"
    path.write_text(nodes_yaml)
    return path


def _supervisor(tmp_path, stack, **kw):
    env = dict(os.environ, PYTHONPATH=str(PEERS), DUMMY_PID_DIR=str(tmp_path))
    out = io.StringIO()
    return Supervisor(load_stack(stack), out=out, env=env, **kw), out


def _pids(tmp_path):
    return {p.stem: int(p.read_text()) for p in tmp_path.glob("*.pid")}


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_stop_request_reaches_every_child(tmp_path):
    stack = _stack(tmp_path, "nodes:\n"
                   "  - {name: a, module: dummy_node, params: [a.yaml]}\n"
                   "  - {name: b, module: dummy_node, args: ['-p', 'mode:=run']}\n")
    sup, out = _supervisor(tmp_path, stack)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.run()))
    thread.start()
    assert _wait_for(lambda: "a up" in out.getvalue() and "b up" in out.getvalue()), out.getvalue()
    sup.request_stop()
    thread.join(30)
    assert result["code"] == 0
    text = out.getvalue()
    assert "[a] a got SIGINT" in text and "[b] b got SIGINT" in text
    assert f"--params-file {tmp_path / 'a.yaml'}" in text  # params resolved next to the stack file
    assert all(_gone(pid) for pid in _pids(tmp_path).values())


def test_one_dead_child_stops_the_stack_and_escalates(tmp_path):
    stack = _stack(tmp_path, "nodes:\n"
                   "  - {name: stubborn, module: dummy_node, args: ['-p', 'mode:=stubborn']}\n"
                   "  - {name: failing, module: dummy_node, args: ['-p', 'mode:=fail']}\n")
    sup, out = _supervisor(tmp_path, stack, stop_timeout=0.5)
    code = sup.run()
    text = out.getvalue()
    assert code == 3, text
    assert "failing exited with code 3: stopping the stack" in text
    assert "escalating to SIGTERM for stubborn" in text
    assert all(_gone(pid) for pid in _pids(tmp_path).values())


def test_up_command_forwards_sigint(tmp_path):
    stack = _stack(tmp_path, "nodes:\n  - {name: a, module: dummy_node}\n  - {name: b, module: dummy_node}\n")
    env = dict(os.environ, PYTHONPATH=str(PEERS), DUMMY_PID_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vla_adapter_ros.cli", "up", str(stack)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert _wait_for(lambda: len(_pids(tmp_path)) == 2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # only the supervisor: it must forward to the children
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "[a] a got SIGINT" in out and "[b] b got SIGINT" in out
    assert all(_gone(pid) for pid in _pids(tmp_path).values())


@pytest.mark.parametrize("text, match", [
    ("nodes: []\n", "non-empty 'nodes' list"),
    ("nodes: [{name: a}]\n", "'module'"),
    ("nodes: [{name: 'bad name', module: m}]\n", "valid node name"),
    ("nodes: [{name: a, module: m}, {name: a, module: m}]\n", "duplicate node name"),
    ("nodes: [{name: a, module: m, params: [missing.yaml]}]\n", "parameter file 'missing.yaml' not found"),
    ("nodes: [{name: a, module: m, colour: red}]\n", "unknown keys"),
    ("nodes: [unclosed\n", "not valid YAML"),
])
def test_malformed_stack_files(tmp_path, text, match):
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    with pytest.raises(StackError, match=match):
        load_stack(path)
