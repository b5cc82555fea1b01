"""Release metadata a ROS maintainer (and the build farm's linters) would check: package.xml against
package format 3 (what ament_xmllint checks, offline), LICENSE against <license>, no other license
notice in the sources (the part of ament_copyright that applies to a single-license package),
CHANGELOG.rst in the catkin format, and resource/ in step with the nodes' configuration."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE_XML = REPO / "package.xml"
COPYRIGHT_HOLDER = "vla_adapter_ros contributors"

# The top-level sequence of <package> in package_format3.xsd (github.com/ros-infrastructure/rep,
# xsd/package_format3.xsd at commit 11ca24a41f31480dfb9562ba99f2a5b93d3ebda5, read on 2026-11-30):
# elements must appear in this order; the dependency tags may mix among themselves.
FORMAT3_SEQUENCE = [
    {"name"}, {"version"}, {"description"}, {"maintainer"}, {"license"}, {"url"}, {"author"},
    {"build_depend", "build_export_depend", "buildtool_depend", "buildtool_export_depend", "exec_depend",
     "depend", "doc_depend", "test_depend", "conflict", "replace"},
    {"group_depend"}, {"member_of_group"}, {"export"},
]
REQUIRED = ("name", "version", "description", "maintainer", "license")


@pytest.fixture(scope="module")
def manifest() -> ET.Element:
    return ET.parse(PACKAGE_XML).getroot()  # raises on XML that is not well-formed


def test_package_xml_is_format_3_with_its_schema(manifest):
    assert manifest.tag == "package" and manifest.get("format") == "3"
    head = PACKAGE_XML.read_text(encoding="utf-8")[:400]
    assert 'href="http://download.ros.org/schema/package_format3.xsd"' in head


def test_package_xml_elements_in_schema_order(manifest):
    positions = []
    for child in manifest:
        if not isinstance(child.tag, str):  # comments
            continue
        slot = [i for i, tags in enumerate(FORMAT3_SEQUENCE) if child.tag in tags]
        assert slot, f"<{child.tag}> is not a package format 3 element"
        positions.append((slot[0], child.tag))
    out_of_order = [(a[1], b[1]) for a, b in zip(positions, positions[1:]) if b[0] < a[0]]
    assert not out_of_order, f"package_format3.xsd fixes the order; these pairs are reversed: {out_of_order}"
    counts = {tag: sum(1 for _, t in positions if t == tag) for tag in ("name", "version", "description", "export")}
    assert all(n <= 1 for n in counts.values()), counts


def test_package_xml_required_fields(manifest):
    for tag in REQUIRED:
        assert (manifest.findtext(tag) or "").strip(), f"<{tag}> missing or empty"
    assert re.fullmatch(r"[a-z](_?[a-z0-9]+)*", manifest.findtext("name"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest.findtext("version"))
    for person in manifest.findall("maintainer"):
        assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", person.get("email", "")), person.attrib
        assert person.text.strip()
    assert manifest.findtext("export/build_type") == "ament_cmake"
    assert manifest.findtext("license") == "MIT"


def test_package_xml_parses_with_catkin_pkg():
    """catkin_pkg is what colcon, rosdep and bloom read package.xml with; validate() applies its rules."""
    package = pytest.importorskip("catkin_pkg.package")
    pkg = package.parse_package(str(PACKAGE_XML))
    pkg.validate()
    assert pkg.name == "vla_adapter_ros" and pkg.get_build_type() == "ament_cmake"
    assert [str(lic) for lic in pkg.licenses] == ["MIT"] and pkg.licenses[0].file == "LICENSE"


def test_license_file_is_mit_with_the_holder():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert re.search(rf"^Copyright \(c\) \d{{4}}(-\d{{4}})? {re.escape(COPYRIGHT_HOLDER)}$", text, re.MULTILINE)
    body = " ".join(text.split())
    for sentence in (
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this software",
        "The above copyright notice and this permission notice shall be included in all copies or "
        "substantial portions of the Software.",
        'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND',
    ):
        assert sentence in body


FOREIGN_LICENSE = re.compile(
    r"SPDX-License-Identifier:\s*(?!MIT\b)\S+|Apache License|GNU (Lesser |Affero )?General Public License"
    r"|Mozilla Public License|All rights reserved",
    re.IGNORECASE,
)
SOURCE_GLOBS = ("vla_adapter_ros/**/*.py", "test/**/*.py", "launch/*.py", "scripts/**/*", "config/**/*.yaml",
                "msg/*", "srv/*", "action/*", "resource/*", "setup.py", "CMakeLists.txt")


def test_no_source_file_carries_another_license():
    """The package is MIT as a whole (LICENSE); a file under another license (copied code, vendored
    files) must be noticed and declared in package.xml, not slip in."""
    this = Path(__file__).resolve()
    found = {}
    for pattern in SOURCE_GLOBS:
        for path in REPO.glob(pattern):
            if not path.is_file() or path.resolve() == this or "__pycache__" in path.parts:
                continue
            match = FOREIGN_LICENSE.search(path.read_text(encoding="utf-8", errors="replace"))
            if match:
                found[str(path.relative_to(REPO))] = match.group(0)
    assert not found, f"license notices other than the package's MIT: {found}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning:catkin_pkg.*")  # docutils' Node.traverse()
def test_changelog_in_catkin_format():
    text = (REPO / "CHANGELOG.rst").read_text(encoding="utf-8")
    title = "Changelog for package vla_adapter_ros"
    assert text.startswith(f"{'^' * len(title)}\n{title}\n{'^' * len(title)}\n")
    sections = re.findall(r"^(\d+\.\d+\.\d+) \((\d{4}-\d{2}-\d{2})\)\n(-+)$", text, re.MULTILINE)
    assert sections, "no '<version> (<date>)' section"
    for version, date, underline in sections:
        assert len(underline) == len(f"{version} ({date})"), f"{version}: underline length"
    versions = [tuple(map(int, v.split("."))) for v, _, _ in sections]
    assert versions == sorted(versions, reverse=True), "newest version first"
    changelog = pytest.importorskip("catkin_pkg.changelog")
    parsed = changelog.get_changelog_from_path(str(REPO / "CHANGELOG.rst"), "vla_adapter_ros")
    assert [v for v, _, _ in parsed.foreach_version()] == [v for v, _, _ in sections]


def _sim_params() -> dict:
    return yaml.safe_load((REPO / "config" / "sim.yaml").read_text(encoding="utf-8"))["sim_node"]["ros__parameters"]


def _rviz_displays(config: dict) -> list[dict]:
    return config["Visualization Manager"]["Displays"]


def test_rviz_config_matches_the_sim_topics():
    config = yaml.safe_load((REPO / "resource" / "sim.rviz").read_text(encoding="utf-8"))
    params = _sim_params()
    displays = _rviz_displays(config)
    classes = {d["Class"] for d in displays}
    assert classes == {"rviz_default_plugins/Grid", "rviz_default_plugins/Pose", "rviz_default_plugins/Image",
                       "rviz_default_plugins/RobotModel", "rviz_default_plugins/TF"}
    images = [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"]
    poses = [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Pose"]
    # the sim's topic names are relative: in the root namespace they are these absolute ones
    assert sorted(images) == sorted("/" + name for name in params["camera_topics"])
    assert poses == ["/" + params["eef_pose_topic"]]
    (model,) = [d for d in displays if d["Class"] == "rviz_default_plugins/RobotModel"]
    # the URDF is published once, transient local: RViz must ask for it that way to get it when it starts later
    assert model["Description Source"] == "Topic"
    assert model["Description Topic"]["Value"] == "/" + params["robot_description_topic"]
    assert model["Description Topic"]["Durability Policy"] == "Transient Local"
    assert model["TF Prefix"] == params["tf_prefix"]
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == params["frame_id"]
    for d in displays:
        assert d["Enabled"] is True and d["Name"]


def test_resource_installed_to_share():
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"foreach\(share_dir [^)]*\bresource\b[^)]*\)", cmake)
    assert (REPO / "resource").is_dir() and any((REPO / "resource").iterdir())
