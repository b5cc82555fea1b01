"""The ROS-workspace build: `colcon build` on this package, then the interfaces, the Python package,
the node executables and the share files are all found in the install space; `colcon test` runs the
Python test suite through ament_cmake_pytest and `colcon test-result` reports it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
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


# Set for the suite that `colcon test` runs below: it must not build and test the workspace again.
NESTED = "VLA_COLCON_TEST_NESTED"


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run in a process group of its own that is killed whole on timeout (colcon leaves
    ctest and pytest children behind otherwise)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"timed out after {timeout} s: {cmd}\n{out[-4000:]}{err[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _has_ament_cmake_pytest(env: dict) -> bool:
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return any((Path(p) / "share" / "ament_cmake_pytest").is_dir() for p in prefixes)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """`colcon build` of this package in a fresh workspace (one build for the tests of this module), with
    BUILD_TESTING on where ament_cmake_pytest is installed."""
    if os.environ.get(NESTED):
        pytest.skip("inside the `colcon test` run of test_colcon_test_runs_pytest_and_test_result_reports_it")
    colcon = _colcon()
    ws = tmp_path_factory.mktemp("ws")
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "vla_adapter_ros").symlink_to(REPO, target_is_directory=True)

    env = dict(os.environ)
    underlay = [str(PREFIX)] if (PREFIX / "share" / "ament_cmake").is_dir() else []
    for key in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH"):
        paths = underlay + [p for p in env.get(key, "").split(os.pathsep) if p]
        env[key] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.pathsep.join([str(PREFIX / "bin"), env.get("PATH", "")])
    testing = _has_ament_cmake_pytest(env)

    build = _run(
        [colcon, "--log-base", str(ws / "log"), "build", "--base-paths", "src",
         "--build-base", str(ws / "build"), "--install-base", str(ws / "install"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", f"-DBUILD_TESTING={'ON' if testing else 'OFF'}"],
        timeout=840, cwd=ws, env=env,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return colcon, ws, env, testing


@pytest.mark.timeout(900)  # includes the build (about 1 min on an idle machine, 3+ on a loaded one)
def test_colcon_build_and_import_from_install_space(workspace):
    colcon, ws, env, _ = workspace
    install = ws / "install" / "vla_adapter_ros"
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = install / "lib" / pyver / "site-packages" / "vla_adapter_ros"
    assert (site / "msg" / "__init__.py").is_file()
    assert (site / "cli.py").is_file(), "Python sources are installed next to the interfaces"
    assert (install / "share" / "vla_adapter_ros" / "package.xml").is_file()
    assert (install / "share" / "vla_adapter_ros" / "msg" / "ActionChunk.msg").is_file()
    for resource in sorted((REPO / "resource").iterdir()):
        assert (install / "share" / "vla_adapter_ros" / "resource" / resource.name).is_file(), resource.name
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


@pytest.mark.timeout(900)
def test_colcon_test_runs_pytest_and_test_result_reports_it(workspace):
    colcon, ws, env, testing = workspace
    if not testing:
        pytest.skip("ament_cmake_pytest is not installed (requirements/ros-kilted.txt; rosdep: ament_cmake_pytest)")
    # The suite itself is run by the README's test command; here only the plumbing, with two quick
    # modules (test_package_manifest.py and test_package_metadata.py): ignore every other test file.
    # pytest makes --ignore-glob patterns absolute against its working directory (the build folder),
    # so they name the test folder in full.
    tests = ws / "src" / "vla_adapter_ros" / "test"
    run_env = {k: v for k, v in env.items() if not k.startswith("PYTEST_")}
    run_env[NESTED] = "1"
    run_env["PYTEST_ADDOPTS"] = f"--ignore-glob={tests}/test_[!p]*.py --ignore-glob={tests}/test_p[!a]*.py"
    test = _run(
        [colcon, "--log-base", str(ws / "log"), "test", "--base-paths", "src", "--packages-select", "vla_adapter_ros",
         "--build-base", str(ws / "build"), "--install-base", str(ws / "install")],
        timeout=600, cwd=ws, env=run_env,
    )
    assert test.returncode == 0, test.stdout[-4000:] + test.stderr[-4000:]
    junit = ws / "build" / "vla_adapter_ros" / "test_results" / "vla_adapter_ros" / "pytest.xunit.xml"
    assert junit.is_file(), test.stdout[-4000:]
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    modules = {case.get("classname", "").rsplit(".", 1)[-1] for case in suite.iter("testcase")}
    assert modules == {"test_package_manifest", "test_package_metadata"}, modules
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0 and int(suite.get("tests")) > 10

    result = _run(
        [colcon, "--log-base", str(ws / "log"), "test-result", "--test-result-base", str(ws / "build"), "--all"],
        timeout=120, cwd=ws, env=run_env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pytest.xunit.xml" in result.stdout and " 0 failures" in result.stdout, result.stdout
