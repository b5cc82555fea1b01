"""The `vla-adapter-ros` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vla_adapter_ros import cli


def test_info_reports_interfaces_and_middleware(capsys):
    code = cli.main(["info"])
    out = capsys.readouterr().out
    assert "interfaces    ok" in out and "rclpy         ok" in out
    assert code in (0, 1)  # 1 only when an optional part (torch/transformers) is missing
    if code == 1:
        assert "MISSING" in out


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def test_console_script_runs_in_a_fresh_process():
    result = subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "info"],
                            capture_output=True, text=True, timeout=120)
    assert "vla_adapter_ros 0.1.0" in result.stdout, result.stderr
