#!/usr/bin/env bash
# On the lent GPU machine (Python 3.12 with torch/numpy/OpenCV, no ROS, no network): unpack the
# bundle that bench/gpu/bundle.sh built (carried as .carry/gpu_bundle; bench/gpu/prelude.sh),
# then run the fleet benchmark with the server on CUDA in fp16 (CUDA graphs), N = 1, 4, 8, 16,
# 32 robots at 30 fps each, then one robot end to end (camera -> edge -> server, both on CUDA;
# SKIP_PIPELINE=1 leaves it out); results under $OUT/fleet_gpu (the device tool's output folder).
#
#   bash bench/gpu/run_fleet.sh                       # ROBOTS=1,4,8,16,32 by default
#   ROBOTS=16 SECONDS_PER_RUN=10 bash bench/gpu/run_fleet.sh --max-batch 16
#   SKIP_PIPELINE=1 bash bench/gpu/run_fleet.sh --devices cuda:0,cuda:1    # 2 GPUs
#   ROBOTS=1 PIPELINE_ARGS="--executor events --dds-profile config/fastdds.xml" bash ...
# Extra arguments go to bench/fleet/run.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/prelude.sh run_fleet
RESULTS=${RESULTS:-${OUT:-$ROOT/bench/results}/fleet_gpu}
ROBOTS=${ROBOTS:-1,4,8,16,32}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}

mkdir -p "$RESULTS"
"$PY" bench/fleet/run.py --device cuda --precision fp16 --edge-device cuda \
  --robots "$ROBOTS" --per-process 4 --seconds "$SECONDS_PER_RUN" --out "$RESULTS" "$@"
# One robot end to end: camera 640x480 at 30 fps -> edge (CUDA graph) -> server, both on CUDA.
if [ -z "${SKIP_PIPELINE:-}" ]; then
  "$PY" bench/fleet/pipeline.py --device cuda --precision fp16 --seconds "$SECONDS_PER_RUN" \
    --out "$RESULTS/pipeline" ${PIPELINE_ARGS:-}
fi
