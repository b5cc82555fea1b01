"""The linter a ROS maintainer runs before a release: ruff with the rule set in ruff.toml (ament_flake8's
checks; the differences are explained there), over the sources, tests, launch files, node scripts and
setup.py. package.xml, LICENSE and CHANGELOG.rst are checked in test_package_metadata.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    try:
        import ruff  # noqa: F401
    except ImportError:
        exe = shutil.which("ruff")
        if not exe:
            pytest.skip("ruff is not installed (pip install -e .[dev], or rosdep key python3-ruff-pip)")
        return [exe]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_passes():
    result = subprocess.run(
        [*_ruff(), "check", "--no-cache", "--output-format", "concise", str(REPO)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        "ruff found problems (run `.venv/bin/ruff check` to see them, `--fix` for the fixable ones):\n"
        + result.stdout[-6000:] + result.stderr[-2000:]
    )


def test_ruff_uses_the_repository_config():
    """The check above only means something if ruff reads ruff.toml (line length, selected rules)."""
    result = subprocess.run(
        [*_ruff(), "check", "--show-settings", str(REPO / "setup.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(REPO / "ruff.toml") in result.stdout
    assert "line_length = 120" in result.stdout.replace('"', "")
