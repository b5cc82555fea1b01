"""A new user's first hour (issue 17): start-up failures say why, at once, and leave no results behind.

Argument errors (unknown task, missing or corrupt checkpoint, a typo in a parameter file) are found before
any node starts: exit code 2, one line on stderr naming the cause, nothing written. A node that exits while
the stack starts stops the wait at once: its own one-line reason (the ``[FATAL] ...`` line of
nodes.common.fatal) on stderr, exit code 1, no summary.json / table / media (only the nodes' log).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from vla_adapter_ros import cli

KNOWN_TASKS = "['lift_green', 'push_blue_left', 'reach_red']"


def _no_results(out: Path) -> None:
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert "summary.json" not in written and not [n for n in written if n.endswith((".gif", ".png", ".mp4"))], written


# ---------------------------------------------------------------------------------------------
# found before anything starts (in-process; ros_domain in case a regression starts nodes after all)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, line", [
    (["demo", "--checkpoint", "/nonexistent"], "demo: --checkpoint: /nonexistent: checkpoint directory not found"),
    (["demo", "--tasks", "no_such_task"], f"demo: unknown task 'no_such_task'; known: {KNOWN_TASKS}"),
    (["demo", "--tasks", "reach_red", "no_such_task"], f"demo: unknown task 'no_such_task'; known: {KNOWN_TASKS}"),
    (["demo", "--episodes", "0"], "demo: --episodes must be at least 1, got 0"),
    (["collect", "--tasks", "no_such_task"], f"collect: unknown task 'no_such_task'; known: {KNOWN_TASKS}"),
    (["collect", "--start-jitter", "1.5"], "collect: start jitter must be in [0, 1], got 1.5"),
    (["replay", "--oracle", "--tasks", "no_such_task"], f"replay: unknown task 'no_such_task'; known: {KNOWN_TASKS}"),
    (["replay"], "replay: give a DATASET to replay, or --oracle"),
    (["libero-eval", "--libero-python", "/nonexistent/python"],
     "libero-eval: no LIBERO environment at /nonexistent/python: run scripts/setup_libero.sh "
     "(or pass --libero-python)"),
    (["libero-eval", "--libero-python", sys.executable, "--checkpoint", "/nonexistent"],
     "libero-eval: checkpoint for libero_spatial: /nonexistent is not a directory"),
])
def test_bad_arguments_are_refused_before_anything_starts(argv, line, ros_domain, tmp_path, capsys):
    pytest.importorskip("mujoco")
    out = tmp_path / "out"
    assert cli.main([*argv, "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n"
    assert captured.out == ""  # not even the ROS_DOMAIN_ID line: nothing started
    assert not out.exists()  # nothing written


def _tiny_checkpoint(path: Path) -> Path:
    from vla_adapter_ros.model.config import tiny_config

    path.mkdir()
    tiny_config().save(path / "config.yaml")
    (path / "dataset_statistics.json").write_text("{}")
    return path


def test_a_corrupt_checkpoint_is_refused_before_anything_starts(ros_domain, tmp_path, capsys):
    pytest.importorskip("mujoco")
    out = tmp_path / "out"
    ck = _tiny_checkpoint(tmp_path / "ck")
    (ck / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    assert cli.main(["demo", "--checkpoint", str(ck), "--output", str(out)]) == 2
    assert capsys.readouterr().err == (f"demo: --checkpoint: {ck}/model.safetensors: not a safetensors file "
                                       "(no valid header in its 1024 bytes)\n")
    (ck / "model.safetensors").unlink()
    assert cli.main(["demo", "--checkpoint", str(ck), "--output", str(out)]) == 2
    assert capsys.readouterr().err == f"demo: --checkpoint: {ck}/model.safetensors: file not found\n"
    (ck / "config.yaml").write_text("no: [valid\n")
    assert cli.main(["demo", "--checkpoint", str(ck), "--output", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"demo: --checkpoint: {ck}/config.yaml: ")
    assert not out.exists()


def test_checkpoint_preflight_accepts_a_real_checkpoint_header(tmp_path):
    np = pytest.importorskip("numpy")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from vla_adapter_ros.stack_session import PreflightError, check_checkpoint_dir

    ck = _tiny_checkpoint(tmp_path / "ck")
    safetensors_numpy.save_file({"a": np.zeros((3, 4), np.float32), "b": np.ones(5, np.int64)},
                                str(ck / "model.safetensors"))
    check_checkpoint_dir(ck)  # header only: loads in milliseconds
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[:-3])  # truncated: safetensors itself refuses it too
    with pytest.raises(PreflightError, match="corrupt or truncated safetensors file"):
        check_checkpoint_dir(ck)


@pytest.mark.parametrize("command", ["demo", "collect", "replay"])
def test_a_typo_in_params_is_refused_before_anything_starts(command, ros_domain, tmp_path, capsys):
    pytest.importorskip("mujoco")
    typo = tmp_path / "typo.yaml"
    typo.write_text("sim_node:\n  ros__parameters:\n    real_time_factr: 0.5\n")
    out = tmp_path / "out"
    argv = [command, *(["--oracle"] if command == "replay" else []), "--params", str(typo), "--output", str(out)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (f"{command}: {typo}: sim_node: unknown parameter 'real_time_factr' "
                                       "(did you mean 'real_time_factor'?)\n")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# a node that exits during start-up (real nodes over real middleware)
# ---------------------------------------------------------------------------------------------
def _run_to_end(processes, name, argv, timeout=150.0):
    child = processes.start(name, [sys.executable, "-m", "vla_adapter_ros.cli", *argv])
    start = time.monotonic()
    code = child.wait_exit(timeout)
    return code, child.output(), time.monotonic() - start


@pytest.mark.ros
@pytest.mark.parametrize("command", ["demo", "collect", "replay"])
def test_a_node_that_exits_at_start_up_stops_the_run_at_once_with_its_reason(command, processes, tmp_path):
    pytest.importorskip("mujoco")
    if command == "demo":
        pytest.importorskip("torch")
    bad = tmp_path / "bad.yaml"  # a valid key, a value the executor refuses when it starts
    bad.write_text("executor_node:\n  ros__parameters:\n    robot: \"no_such_robot\"\n")
    out = tmp_path / "out"
    argv = [command, *(["--oracle"] if command == "replay" else []), "--tasks", "reach_red", "--episodes", "1",
            "--params", str(bad), "--output", str(out), "--no-progress"]
    code, text, seconds = _run_to_end(processes, command, argv)
    lines = text.splitlines()
    assert code == 1, text
    reason = [line for line in lines if line.startswith(f"{command}: executor_node exited with code 1: ")]
    assert len(reason) == 1, text
    assert reason[0].startswith(f"{command}: executor_node exited with code 1: cannot start: ")
    assert "no_such_robot" in reason[0]
    assert f"{command}: the run did not start; no results written (nodes' output: {out / 'nodes.log'})" in lines
    assert "did not come up" not in text and "average" not in text  # no time-out story, no 0/0 table
    assert seconds < 100  # not the 120-300 s start-up timeout
    _no_results(out)
    assert "[FATAL]" in (out / "nodes.log").read_text()  # the details stay in the log


@pytest.mark.ros
def test_libero_eval_start_up_failure_says_why(processes, tmp_path):
    import importlib.util

    pytest.importorskip("torch")
    if importlib.util.find_spec("libero") is not None:
        pytest.skip("this environment has libero: libero_node would start")
    out = tmp_path / "out"
    # this environment's interpreter as the "LIBERO environment": libero_node cannot import libero and exits
    code, text, seconds = _run_to_end(processes, "libero-eval", [
        "libero-eval", "--libero-python", sys.executable, "--suites", "libero_spatial", "--tasks", "0",
        "--episodes-per-task", "1", "--device", "cpu", "--output", str(out)])
    lines = text.splitlines()
    assert code == 1, text
    assert "libero-eval: libero_node exited with code 1: cannot start: ModuleNotFoundError: No module named " \
           "'libero'" in lines, text
    assert ("libero-eval: the run did not start; no results written (nodes' output: "
            f"{out / 'nodes_libero_spatial.log'})") in lines
    assert "LIBERO success rate" not in text and seconds < 100
    _no_results(out)


def test_up_refuses_a_bad_namespace_before_anything_starts(ros_domain, capsys):
    stack = Path(__file__).resolve().parents[1] / "config" / "sim_stack.yaml"
    assert cli.main(["up", str(stack), "--namespace", "robot-1"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("vla-adapter-ros up: namespace must be like robot1 or /lab/robot1 (letters, digits, _; "
                            "a token may not start with a digit), got 'robot-1'\n")
    assert captured.out == ""
