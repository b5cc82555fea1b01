"""vla_adapter_ros: VLA-Adapter policies driving robot arms through ROS 2."""

# The generated interfaces (vla_adapter_ros.msg/.srv/.action) may live in a different directory
# than these sources: in the pip-only setup they are built into the venv while the sources are used
# from the checkout. Merge every `vla_adapter_ros` directory on sys.path into one package.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
