"""package.xml (the ROS route), setup.py (the pip route) and the pinned requirements must agree: the
same version, the same license and the same dependencies. Reads the files only (setup.py is parsed,
not run); no network, nothing installed."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# setup.py distribution -> rosdep key in package.xml (None: not a package dependency).
RUNTIME_KEYS = {
    "numpy": "python3-numpy",
    "pyyaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "torch": "python3-torch",
    "transformers": "python3-transformers-pip",
    "mujoco": "python3-mujoco-pip",
    "pillow": "python3-pil",
    "matplotlib": "python3-matplotlib",
    "rosbags": "python3-rosbags-pip",
}
TEST_KEYS = {
    "pytest": "python3-pytest",
    "pytest-timeout": "python3-pytest-timeout",
    "hypothesis": "python3-hypothesis",
    "ruff": "python3-ruff-pip",
    "catkin-pkg": "python3-catkin-pkg",
    "packaging": "python3-packaging",
    "colcon-common-extensions": None,  # the workspace's build tool, not a dependency of the package
}
RUNTIME_EXTRAS = ("model", "sim", "data")  # "all" is their union; "dev" holds the test dependencies
PIP_PINS = REPO / "requirements" / "ros-workspace.txt"
PIP_PINS_NO_DEPS = REPO / "requirements" / "ros-workspace-no-deps.txt"
ROS_WHEELS = REPO / "requirements" / "ros-kilted.txt"


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def split_requirement(req: str) -> tuple[str, str]:
    """'torch>=2.4' -> ('torch', '>=2.4')."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", req)
    assert match, req
    return normalise(match.group(1)), match.group(2)


class SetupPy:
    """The literal metadata of setup.py, read from its syntax tree."""

    def __init__(self, path: Path):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.names = {
            target.id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", None) == "setup"]
        assert len(calls) == 1, "setup.py must call setup() once"
        self.kwargs = {kw.arg: kw.value for kw in calls[0].keywords}

    def value(self, node: ast.AST):
        if isinstance(node, ast.Name):
            return self.value(self.names[node.id])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.value(node.left) + self.value(node.right)
        if isinstance(node, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        return ast.literal_eval(node)

    def __getitem__(self, key: str):
        return self.value(self.kwargs[key])

    def requirements(self, *extras: str) -> dict[str, str]:
        reqs = list(self["install_requires"]) if not extras or "install_requires" in extras else []
        for extra in extras:
            if extra != "install_requires":
                reqs += self["extras_require"][extra]
        return dict(split_requirement(r) for r in reqs)


@pytest.fixture(scope="module")
def setup_py() -> SetupPy:
    return SetupPy(REPO / "setup.py")


@pytest.fixture(scope="module")
def manifest() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def manifest_keys(manifest: ET.Element, *tags: str) -> set[str]:
    return {el.text.strip() for tag in tags for el in manifest.iter(tag) if el.text}


def pins(path: Path) -> dict[str, str]:
    """Distribution -> version of a requirements file that pins with '=='."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, spec = split_requirement(line)
        assert re.fullmatch(r"==[0-9][0-9A-Za-z.+!-]*", spec), f"{path.name}: not an exact pin: {line!r}"
        assert name not in out, f"{path.name}: {name} pinned twice"
        out[name] = spec[2:]
    return out


def changelog_version() -> str:
    text = (REPO / "CHANGELOG.rst").read_text(encoding="utf-8")
    match = re.search(r"^(\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)\n-+$", text, re.MULTILINE)
    assert match, "CHANGELOG.rst has no '<version> (<date>)' section"
    return match.group(1)


def test_versions_agree(setup_py, manifest):
    init = (REPO / "vla_adapter_ros" / "__init__.py").read_text(encoding="utf-8")
    init_version = re.search(r'^__version__ = "([^"]+)"', init, re.MULTILINE).group(1)
    versions = {
        "package.xml": manifest.findtext("version"),
        "setup.py": setup_py["version"],
        "vla_adapter_ros/__init__.py": init_version,
        "CHANGELOG.rst (newest entry)": changelog_version(),
    }
    assert len(set(versions.values())) == 1, versions


def test_license_agrees(setup_py, manifest):
    licenses = manifest.findall("license")
    assert [el.text for el in licenses] == [setup_py["license"]] == ["MIT"]
    assert licenses[0].get("file") == "LICENSE" and (REPO / "LICENSE").is_file()


def test_every_runtime_library_is_a_rosdep_key_or_pinned(setup_py, manifest):
    runtime = setup_py.requirements("install_requires", *RUNTIME_EXTRAS)
    exec_keys = manifest_keys(manifest, "depend", "exec_depend")
    pinned = pins(PIP_PINS)
    uncovered = [dist for dist in runtime if RUNTIME_KEYS.get(dist) not in exec_keys and dist not in pinned]
    assert not uncovered, (
        f"setup.py needs {uncovered} at run time, but package.xml has no rosdep key for them and "
        f"{PIP_PINS.name} does not pin them"
    )


def test_package_xml_has_no_python_key_setup_py_lacks(setup_py, manifest):
    runtime = setup_py.requirements("install_requires", *RUNTIME_EXTRAS)
    key_to_dist = {key: dist for dist, key in RUNTIME_KEYS.items()}
    python_keys = {k for k in manifest_keys(manifest, "depend", "exec_depend") if k.startswith("python3-")}
    extra = {key for key in python_keys if key_to_dist.get(key) not in runtime}
    assert not extra, f"package.xml declares {extra}, setup.py does not (or RUNTIME_KEYS lacks them)"


def test_pins_are_setup_py_dependencies_within_its_ranges(setup_py):
    from packaging.specifiers import SpecifierSet

    runtime = setup_py.requirements("install_requires", *RUNTIME_EXTRAS)
    pinned = pins(PIP_PINS)
    assert pinned, f"{PIP_PINS.name} pins nothing"
    not_ours = sorted(set(pinned) - set(runtime))
    assert not not_ours, f"{PIP_PINS.name} pins {not_ours}, which setup.py does not require"
    outside = {dist: (version, runtime[dist]) for dist, version in pinned.items()
               if not SpecifierSet(runtime[dist]).contains(version, prereleases=True)}
    assert not outside, f"pins outside setup.py's ranges (pin, range): {outside}"


def test_robosuite_pin_matches_scripts_setup_sh():
    """robosuite is installed without its dependencies on both routes; the versions must agree."""
    no_deps = pins(PIP_PINS_NO_DEPS)
    assert set(no_deps) == {"robosuite"}
    version = no_deps["robosuite"]
    setup_sh = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert re.findall(r"--no-deps robosuite==([0-9.]+)", setup_sh) == [version]


def test_test_dependencies_agree(setup_py, manifest):
    dev = setup_py.requirements("dev")
    assert set(dev) == set(TEST_KEYS), f"setup.py's dev extra changed: map {set(dev) ^ set(TEST_KEYS)} in TEST_KEYS"
    test_keys = manifest_keys(manifest, "test_depend")
    missing = {dist: key for dist, key in TEST_KEYS.items() if key and key not in test_keys}
    assert not missing, f"package.xml lacks <test_depend> for: {missing}"
    python_keys = {k for k in test_keys if k.startswith("python3-")}
    extra = python_keys - set(TEST_KEYS.values())
    assert not extra, f"package.xml <test_depend> {extra} is not in setup.py's dev extra"


# Needed by `ros2 launch` only (the launch files and the launch-time part of vla_adapter_ros/launch_args.py):
# PyPI has no wheels of them, and the pip-only route starts stacks with `vla-adapter-ros up` instead.
LAUNCH_ONLY = {"launch", "launch_ros"}
# Optional at run time with no wheel on PyPI (`pip index versions ros-tf2-msgs` finds none): sim_node publishes
# /tf and /tf_static only where tf2_msgs imports (every ROS 2 install) and says so once elsewhere.
OPTIONAL_NO_WHEEL = {"tf2_msgs"}


def test_ros_packages_are_pinned_for_the_pip_only_setup(manifest):
    """Every ROS package package.xml depends on has its wheel in requirements/ros-kilted.txt, so that the
    pip-only setup (scripts/setup.sh) has what rosdep installs on a ROS machine."""
    tags = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend")
    ros_packages = {k for k in manifest_keys(manifest, *tags) if not k.startswith("python3-")}
    ros_packages -= LAUNCH_ONLY | OPTIONAL_NO_WHEEL
    wheels = pins(ROS_WHEELS)
    missing = sorted(p for p in ros_packages if "ros-" + normalise(p) not in wheels)
    assert not missing, f"{ROS_WHEELS.name} lacks the wheels of {missing}"


def test_the_parser_reads_setup_py(setup_py):
    """Guard against checks that pass because the parser found nothing."""
    runtime = setup_py.requirements("install_requires", *RUNTIME_EXTRAS)
    assert {"numpy", "torch", "transformers", "pyarrow", "mujoco"} <= set(runtime)
    assert runtime["transformers"].startswith(">=")
    assert {"numpy", "pyyaml", "tqdm"} <= set(setup_py.requirements("install_requires"))
    assert "pytest" in setup_py.requirements("dev") and "pytest" not in runtime
