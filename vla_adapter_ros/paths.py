"""Where the package's data files are: ``config/`` of the checkout (pip-only, editable install) or
``share/vla_adapter_ros/config`` of a colcon install space (found through the ament index)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

CHECKOUT_CONFIG = Path(__file__).resolve().parent.parent / "config"


@lru_cache(maxsize=None)
def config_dir() -> Path:
    """The config directory; raises FileNotFoundError naming both places looked at."""
    if (CHECKOUT_CONFIG / "robots").is_dir():
        return CHECKOUT_CONFIG
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # no ROS: only the checkout can hold it
        raise FileNotFoundError(f"no config directory: {CHECKOUT_CONFIG} is missing and ament_index_python "
                                "is not installed") from None
    try:
        shared = Path(get_package_share_directory("vla_adapter_ros")) / "config"
    except PackageNotFoundError:
        raise FileNotFoundError(f"no config directory: {CHECKOUT_CONFIG} is missing and vla_adapter_ros is not "
                                "in the ament index (source the workspace's install/setup.bash)") from None
    if not shared.is_dir():
        raise FileNotFoundError(f"no config directory in {CHECKOUT_CONFIG} or {shared}")
    return shared
