"""The ROS-workspace build: `colcon build` on this package, then the interfaces, the Python package,
the node executables and the share files are all found in the install space."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFIX = Path(sys.prefix)

pytestmark = pytest.mark.slow


def _colcon() -> str:
    exe = shutil.which("colcon", path=str(PREFIX / "bin")) or shutil.which("colcon")
    if not exe:
        pytest.skip("colcon is not installed (pip install colcon-common-extensions)")
    if not (PREFIX / "share" / "ament_cmake").is_dir() and "AMENT_PREFIX_PATH" not in os.environ:
        pytest.skip("no ROS 2 underlay (neither a sourced ROS install nor the ROS wheels venv)")
    return exe


def test_colcon_build_and_import_from_install_space(tmp_path):
    colcon = _colcon()
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "vla_adapter_ros").symlink_to(REPO, target_is_directory=True)

    env = dict(os.environ)
    underlay = [str(PREFIX)] if (PREFIX / "share" / "ament_cmake").is_dir() else []
    for key in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        paths = underlay + [p for p in env.get(key, "").split(os.pathsep) if p]
        env[key] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.pathsep.join([str(PREFIX / "bin"), env.get("PATH", "")])

    build = subprocess.run(
        [colcon, "--log-base", str(ws / "log"), "build", "--base-paths", "src",
         "--build-base", str(ws / "build"), "--install-base", str(ws / "install"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]

    install = ws / "install" / "vla_adapter_ros"
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = install / "lib" / pyver / "site-packages" / "vla_adapter_ros"
    assert (site / "msg" / "__init__.py").is_file()
    assert (site / "cli.py").is_file(), "Python sources are installed next to the interfaces"
    assert (install / "share" / "vla_adapter_ros" / "package.xml").is_file()
    assert (install / "share" / "vla_adapter_ros" / "msg" / "ActionChunk.msg").is_file()
    for node in sorted((REPO / "scripts" / "nodes").glob("*")):
        exe = install / "lib" / "vla_adapter_ros" / node.name
        assert exe.is_file() and os.access(exe, os.X_OK), f"node executable {node.name} not installed"

    # Import everything from the install space, the way a sourced workspace does.
    probe = (
        "import pathlib, vla_adapter_ros, vla_adapter_ros.cli\n"
        "from vla_adapter_ros.msg import ActionChunk, ExecutorStatus, PolicyStatus\n"
        "from vla_adapter_ros.srv import SetInstruction\n"
        "from vla_adapter_ros.action import ExecuteInstruction\n"
        "from ament_index_python.packages import get_package_share_directory\n"
        "print(pathlib.Path(vla_adapter_ros.cli.__file__).resolve())\n"
        "print(get_package_share_directory('vla_adapter_ros'))\n"
        "print(ActionChunk.EEF_DELTA)\n"
    )
    script = f'source "{install.parent}/setup.bash" && cd / && "{sys.executable}" -c "$PROBE"'
    run_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    run_env["PROBE"] = probe
    result = subprocess.run(["bash", "-c", script], env=run_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    cli_path, share, eef = result.stdout.split()
    assert Path(cli_path).is_relative_to(install.resolve())
    assert Path(share) == install / "share" / "vla_adapter_ros"
    assert eef == "2"
