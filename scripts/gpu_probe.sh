#!/usr/bin/env bash
# Issue 15 on a GPU: the first-frame localisation probe (scripts/first_frame_probe.py) for far more steps than
# a 2-core CPU session allows. The GPU machine has no MuJoCo and no network, so the probe's caches (rendered
# layouts, expert labels, the held-out scenes) are built here and carried there.
#
#   scripts/gpu_probe.sh --prepare
#       here, with the project venv: build the caches (~3 min the first time, then nothing) into
#       outputs/first_frame_probe/ and copy the offline tokenizer into .whl/pylib (gpu_check.sh --prepare).
#       Then carry outputs/first_frame_probe and .whl to the GPU machine (~40 MB together).
#   scripts/gpu_probe.sh OUT_DIR [SECONDS]     (a relative OUT_DIR is taken from the repository root, as in
#                                              gpu_check.sh)
#       there: three runs side by side on the one GPU, each trained for SECONDS (default 420) with its cosine
#       schedule fitted to that time and scored every 1000 steps: the tiny VLA-Adapter (`tiny-112`, `vla`), the
#       same with the release's training perturbation of the policy latent (`vla_noise`, --train-noise 0.02),
#       and the CNN control (`cnn`). Log and result.json of each into OUT_DIR; the last score of each on stdout.
#
# Environment: PYTHON (default: .venv/bin/python with --prepare, python3 otherwise).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMMON=(--cam 1.0,0,0.62,0.45,0,0.1 --shift 4 --cache-dir outputs/first_frame_probe)

if [[ "${1:-}" == "--prepare" ]]; then
  PY="${PYTHON:-$ROOT/.venv/bin/python}"
  [[ -x "$PY" ]] || { echo "gpu_probe.sh: $PY not found (run scripts/setup.sh first)" >&2; exit 2; }
  "$PY" scripts/first_frame_probe.py --prepare "${COMMON[@]}"
  scripts/gpu_check.sh --prepare
  echo "gpu_probe.sh: carry outputs/first_frame_probe and .whl ($(du -shc outputs/first_frame_probe/*.npz .whl | tail -1 | cut -f1))"
  exit 0
fi

OUT="${1:?usage: scripts/gpu_probe.sh OUT_DIR [SECONDS] | --prepare}"
SECONDS_EACH="${2:-420}"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT:$ROOT/.whl/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null \
  || { echo "gpu_probe.sh: no CUDA device (or no torch) for $PY; on a CPU run scripts/first_frame_probe.py directly" >&2; exit 3; }
mkdir -p "$OUT"
RUN=(--device cuda --steps 1000000 --time-limit "$SECONDS_EACH" --eval-every 1000 --threads 4 "${COMMON[@]}")
pids=()
"$PY" scripts/first_frame_probe.py --name vla "${RUN[@]}" > "$OUT/vla.log" 2>&1 & pids+=($!)
"$PY" scripts/first_frame_probe.py --name vla_noise --train-noise 0.02 "${RUN[@]}" > "$OUT/vla_noise.log" 2>&1 & pids+=($!)
"$PY" scripts/first_frame_probe.py --name cnn --model cnn "${RUN[@]}" > "$OUT/cnn.log" 2>&1 & pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
trap - EXIT
for name in vla vla_noise cnn; do
  [[ -f "outputs/first_frame_probe/$name/result.json" ]] && cp "outputs/first_frame_probe/$name/result.json" "$OUT/$name.json"
  echo "== $name: $(grep -E 'targeting' "$OUT/$name.log" | tail -n 1 || echo 'no score (see the log)')"
done
exit $rc
