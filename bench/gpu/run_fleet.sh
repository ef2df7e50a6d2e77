#!/usr/bin/env bash
# On the lent GPU machine (Python 3.12 with torch/numpy/OpenCV, no ROS, no network): unpack the
# bundle that bench/gpu/bundle.sh built (carried as .carry/gpu_bundle), then run the fleet
# benchmark with the server on CUDA in fp16 (CUDA graphs), N = 1, 4, 8, 16, 32 robots at
# 30 fps each, then one robot end to end (camera -> edge -> server, both on CUDA; SKIP_PIPELINE=1
# leaves it out); results under $OUT/fleet_gpu (the device tool's output folder).
#
#   bash bench/gpu/run_fleet.sh                       # ROBOTS=1,4,8,16,32 by default
#   ROBOTS=16 SECONDS_PER_RUN=10 bash bench/gpu/run_fleet.sh --max-batch 16
#   SKIP_PIPELINE=1 bash bench/gpu/run_fleet.sh --devices cuda:0,cuda:1    # 2 GPUs
#   ROBOTS=1 PIPELINE_ARGS="--executor events --dds-profile config/fastdds.xml" bash ...
# Extra arguments go to bench/fleet/run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BUNDLE=${BUNDLE:-$ROOT/.carry/gpu_bundle/bundle.tar.gz}
UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}
RESULTS=${RESULTS:-${OUT:-$ROOT/bench/results}/fleet_gpu}
ROBOTS=${ROBOTS:-1,4,8,16,32}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}

PY=${PY:-$(command -v python3.12 || command -v python3)}
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' ||
  { echo "run_fleet: $PY is not Python 3.12 (the bundle is built for cp312)" >&2; exit 2; }
[ -f "$BUNDLE" ] || { echo "run_fleet: no $BUNDLE (run bench/gpu/bundle.sh, carry .carry/gpu_bundle)" >&2; exit 2; }

# Unpack once per bundle (a warm machine keeps /tmp between runs).
if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
  rm -rf "$UNPACKED"
  mkdir -p "$UNPACKED"
  tar xzf "$BUNDLE" -C "$UNPACKED"
  sha256sum <"$BUNDLE" >"$UNPACKED/.from"
fi
source "$ROOT/bench/gpu/env.sh" "$UNPACKED"
# This checkout's Python packages before the bundle's copies: the bundle needs rebuilding only
# when the messages (mtl_split_msgs, vision_msgs) change, not for every code change.
export PYTHONPATH=$ROOT:$PYTHONPATH
export MTL_SPLIT_MODELS=$ROOT/models          # the packaged model travels with the repo
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-76} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONUNBUFFERED=1

"$PY" - <<'PY'
import sys, torch, rclpy
from mtl_split.msg import SplitFeatures  # noqa: F401
from vision_msgs.msg import Detection2DArray  # noqa: F401  (the detections; bundle.sh builds it)
from mtl_split_core.runtime.server import ServerRunner  # noqa: F401
import mtl_split_ros.outputs  # noqa: F401  (what the nodes import: rosbags-image, cv2)
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"cuda {torch.cuda.is_available()} ({torch.cuda.device_count()} GPUs), rclpy ok", flush=True)
sys.exit(0 if torch.cuda.is_available() else 3)
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

mkdir -p "$RESULTS"
"$PY" bench/fleet/run.py --device cuda --precision fp16 --edge-device cuda \
  --robots "$ROBOTS" --per-process 4 --seconds "$SECONDS_PER_RUN" --out "$RESULTS" "$@"
# One robot end to end: camera 640x480 at 30 fps -> edge (CUDA graph) -> server, both on CUDA.
if [ -z "${SKIP_PIPELINE:-}" ]; then
  "$PY" bench/fleet/pipeline.py --device cuda --precision fp16 --seconds "$SECONDS_PER_RUN" \
    --out "$RESULTS/pipeline" ${PIPELINE_ARGS:-}
fi
