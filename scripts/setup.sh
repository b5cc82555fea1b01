#!/usr/bin/env bash
# One-command setup without a ROS install.
#
# Creates .venv/ in the repository root with the pinned ROS 2 Kilted wheels from PyPI, builds this
# package's interfaces (msg/srv/action) into it, and installs the project (editable) with its Python
# dependencies. Re-running it is safe and fast; it rebuilds the interfaces only when msg/, srv/,
# action/ or CMakeLists.txt changed.
#
# Environment:
#   VLA_VENV      where to create the venv (default: <repo>/.venv)
#   PYTHON        interpreter to create it with (default: python3; must be CPython 3.11, the ROS
#                 wheels are built for it)
#   TORCH_SPEC    how to install torch when the venv has none (default: torch==2.13.0; on a GPU
#                 machine pick the build you need, e.g. TORCH_SPEC="torch --index-url ...")
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
START=$SECONDS
# shellcheck source=lib/venv_common.sh
. "$ROOT/scripts/lib/venv_common.sh"

require_python311 "$PYTHON"
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null || die "'$tool' not found (Debian/Ubuntu: apt-get install cmake build-essential)"
done

create_venv "$PYTHON" "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

install_ros_wheels "$VENV"

if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
  step "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install -q $TORCH_SPEC
fi

step "installing vla_adapter_ros (editable) and its Python dependencies"
# compat mode puts the checkout itself on sys.path, so edits to the sources need no reinstall.
"${PIP[@]}" install -q --config-settings editable_mode=compat -e "$ROOT[all,dev]"

# The simulation reads the Panda model files from robosuite's package data, and only those: install
# it without its dependencies (they would downgrade numpy and pull numba).
if ! "$VPY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("robosuite") is None)'; then
  step "installing robosuite==1.5.2 (model files for the MuJoCo Franka scene, no dependencies)"
  "${PIP[@]}" install -q --no-deps robosuite==1.5.2
fi

# The wheels' CMake exports carry the include paths of the machine they were built on; point them
# at this interpreter and this numpy (idempotent).
PYINC="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
{ grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" || true; } | xargs -0 -r sed -i \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g"

# Interfaces: generated Python goes to its own directory (a .pth adds it to sys.path) and
# vla_adapter_ros/__init__.py merges it with the sources of this checkout.
IFACE_DIR="lib/vla_adapter_ros_interfaces"
BUILD="$VENV/build/vla_adapter_ros"
STAMP="$VENV/.vla_interfaces.sha"
SHA="$(cd "$ROOT" && cat CMakeLists.txt package.xml msg/* srv/* action/* | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$SHA" ]; then
  step "building the ROS interfaces into the venv"
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  (
    export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY" \
      -DBUILD_TESTING=OFF -DVLA_INSTALL_PYTHON_SOURCES=OFF -DPYTHON_INSTALL_DIR="$IFACE_DIR" \
      >"$BUILD.log" 2>&1 || { tail -40 "$BUILD.log"; die "cmake configure failed (log: $BUILD.log)"; }
    cmake --build "$BUILD" -j"$(nproc)" >>"$BUILD.log" 2>&1 || { tail -40 "$BUILD.log"; die "build failed (log: $BUILD.log)"; }
    cmake --install "$BUILD" >>"$BUILD.log" 2>&1 || { tail -40 "$BUILD.log"; die "install failed (log: $BUILD.log)"; }
  )
  SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$VENV/$IFACE_DIR" >"$SITE/vla_adapter_ros_interfaces.pth"
  echo "$SHA" >"$STAMP"
fi

add_ament_prefix_to_activate "$VENV"

step "checking the installation"
(cd / && AMENT_PREFIX_PATH="$VENV" "$VPY" - "$ROOT" <<'EOF'
import pathlib, sys
import vla_adapter_ros
from vla_adapter_ros.msg import ActionChunk  # noqa: F401
from vla_adapter_ros.srv import SetInstruction  # noqa: F401
from vla_adapter_ros.action import ExecuteInstruction  # noqa: F401
import rclpy  # noqa: F401
src = pathlib.Path(vla_adapter_ros.__file__).resolve().parent
if src != pathlib.Path(sys.argv[1]).resolve() / "vla_adapter_ros":
    sys.exit(f"vla_adapter_ros is imported from {src}, not from the checkout")
EOF
)

printf '\nsetup complete in %ds. Run the tests with: .venv/bin/python -m pytest\n' $((SECONDS - START))
