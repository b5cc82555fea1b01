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


# ---------------------------------------------------------------------------------------------
# the reason a node gives for exiting (issue 17 item 1)
# ---------------------------------------------------------------------------------------------
def test_failure_reason_is_the_nodes_fatal_line():
    from vla_adapter_ros.supervisor import failure_reason

    assert failure_reason(["loading", "[FATAL] [1700000000.123456789] [policy_node]: policy_node: cannot start: X",
                           "[FATAL] policy_node: cannot start: CheckpointError: /x: checkpoint directory not found",
                           "bye"]) == "policy_node: cannot start: CheckpointError: /x: checkpoint directory not found"
    assert failure_reason(["[FATAL] [1700000000.1] [n]: n: cannot start: Y"]) == "n: cannot start: Y"
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1',
                 "ModuleNotFoundError: No module named 'mujoco'"]
    assert failure_reason(traceback) == "ModuleNotFoundError: No module named 'mujoco'"
    assert failure_reason(["something", "last words", ""]) == "last words"
    assert failure_reason([]) == ""


def test_exit_reason_names_the_node_that_exited_first(tmp_path):
    (tmp_path / "fatal_peer.py").write_text(
        "import sys, time\n"
        "print('starting', flush=True)\n"
        "print('[FATAL] fatal_peer_node: cannot start: ValueError: robot: no config for \\'x\\'', file=sys.stderr,"
        " flush=True)\n"
        "sys.exit(1)\n")
    stack = _stack(tmp_path, "nodes:\n  - {name: fatal_peer_node, module: fatal_peer}\n"
                   "  - {name: b, module: dummy_node}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PEERS), str(tmp_path)]), DUMMY_PID_DIR=str(tmp_path))
    sup = Supervisor(load_stack(stack), out=io.StringIO(), env=env)
    assert sup.exit_reason() == ""
    assert sup.run() == 1
    assert sup.exit_reason() == "fatal_peer_node exited with code 1: cannot start: ValueError: robot: no config for 'x'"
    assert all(_gone(pid) for pid in _pids(tmp_path).values())


# ---------------------------------------------------------------------------------------------
# parameter files: unknown nodes and keys are errors before anything starts (issue 17 item 2)
# ---------------------------------------------------------------------------------------------
CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_a_typo_in_a_parameter_file_names_file_node_key_and_the_closest_key(tmp_path):
    from vla_adapter_ros.supervisor import check_parameter_files

    typo = tmp_path / "typo.yaml"
    typo.write_text("sim_node:\n  ros__parameters:\n    real_time_factr: 0.5\n    seed: 3\n"
                    "polcy_node:\n  ros__parameters:\n    device: cpu\n"
                    "/**:\n  ros__parameters:\n    use_sim_time: true\n    chekpoint: /x\n"
                    "executor_node:\n  ros__parameters:\n    qos_overrides:\n      /joint_states:\n"
                    "        subscription:\n          depth: 5\n")
    with pytest.raises(StackError) as exc:
        check_parameter_files(load_stack(CONFIG / "sim_stack.yaml"), [typo])
    assert str(exc.value).splitlines() == [
        f"{typo}: sim_node: unknown parameter 'real_time_factr' (did you mean 'real_time_factor'?)",
        f"{typo}: node 'polcy_node' is not part of this stack (nodes: sim_node, policy_node, executor_node) "
        "(did you mean 'policy_node'?)",
        f"{typo}: /**: unknown parameter 'chekpoint' (did you mean 'checkpoint'?)",
    ]
    with pytest.raises(StackError, match="parameter file not found"):
        check_parameter_files(load_stack(CONFIG / "sim_stack.yaml"), [tmp_path / "missing.yaml"])


def test_a_file_for_another_stacks_node_is_checked_against_that_node(tmp_path):
    from vla_adapter_ros.supervisor import check_parameter_files

    shared = tmp_path / "shared.yaml"
    shared.write_text("sim_node:\n  ros__parameters:\n    seed: 1\n")  # not in the gazebo stack: fine, checked
    check_parameter_files(load_stack(CONFIG / "gazebo_stack.yaml"), [shared])
    shared.write_text("sim_node:\n  ros__parameters:\n    sed: 1\n")
    with pytest.raises(StackError, match="sim_node: unknown parameter 'sed' \\(did you mean 'seed'\\?\\)"):
        check_parameter_files(load_stack(CONFIG / "gazebo_stack.yaml"), [shared])


def test_nodes_of_other_packages_are_not_checked(tmp_path):
    from vla_adapter_ros.supervisor import check_parameter_files

    stack = _stack(tmp_path, "nodes:\n  - {name: a, module: dummy_node, params: [a.yaml]}\n")
    check_parameter_files(load_stack(stack))  # dummy_node declares no DEFAULTS: its keys are its business


def test_declared_parameters_are_the_nodes_defaults():
    pytest.importorskip("rclpy")
    import importlib

    from vla_adapter_ros.supervisor import PACKAGE_NODES, ROS_NODE_PARAMETERS, declared_parameters

    for node in PACKAGE_NODES:
        module = f"vla_adapter_ros.nodes.{node}"
        assert declared_parameters(module) == set(importlib.import_module(module).DEFAULTS) | set(ROS_NODE_PARAMETERS)
    assert declared_parameters("dummy_node_that_does_not_exist") is None


def test_shipped_parameter_files_pass_the_check():
    from vla_adapter_ros.supervisor import PACKAGE_NODES, check_parameter_file, check_parameter_files, \
        declared_parameters

    stacks = sorted(CONFIG.glob("*_stack.yaml"))
    assert stacks
    for stack in stacks:
        check_parameter_files(load_stack(stack))
    nodes = {node: declared_parameters(f"vla_adapter_ros.nodes.{node}") for node in PACKAGE_NODES}
    files = [p for p in [*CONFIG.glob("*.yaml"), *CONFIG.glob("platforms/*.yaml")] if not p.stem.endswith("_stack")]
    assert len(files) >= 10
    for path in files:
        assert check_parameter_file(path, nodes) == [], path


def test_up_refuses_a_typo_before_starting_anything(tmp_path, capsys, monkeypatch):
    from vla_adapter_ros import cli

    def no_start(self):
        raise AssertionError("a node was started")

    monkeypatch.setattr(Supervisor, "run", no_start)
    typo = tmp_path / "typo.yaml"
    typo.write_text("policy_node:\n  ros__parameters:\n    chekpoint: \"/x\"\n")
    assert cli.main(["up", str(CONFIG / "gazebo_stack.yaml"), "--params", str(typo)]) == 2
    assert capsys.readouterr().err == (f"vla-adapter-ros up: {typo}: policy_node: unknown parameter 'chekpoint' "
                                       "(did you mean 'checkpoint'?)\n")
    typo.write_text("sim_node:\n  ros__parameters:\n    real_time_factr: 0.5\n")
    assert cli.main(["up", str(CONFIG / "sim_stack.yaml"), "--params", str(typo)]) == 2
    assert capsys.readouterr().err == (f"vla-adapter-ros up: {typo}: sim_node: unknown parameter 'real_time_factr' "
                                       "(did you mean 'real_time_factor'?)\n")
