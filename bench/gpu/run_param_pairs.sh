#!/usr/bin/env bash
# One server parameter's worth on the lent GPU: the fleet at ROBOTS robots x 30 fps into one
# server process (bench/fleet/run.py, CUDA fp16, as run_speed.sh's fleet rows), this tree with
# PARAM at A and at B, alternating (ABBA...), PAIRS times each. Summary: $OUT/pairs.md
# (bench/fleet/compare.py over every run of each value) and $OUT/log.txt.
#
#   PARAM=publish_gil_free A=true B=false BUNDLE=.carry/gpu_bundle/bundle.tar.gz \
#     bash bench/gpu/run_param_pairs.sh
set -uo pipefail
TREE=$(cd "$(dirname "$0")/../.." && pwd)
PARAM=${PARAM:?the server parameter} A=${A:?its first value} B=${B:?its second value}
FIRST=$A SECOND=$B  # env.sh sets its own A and B (the bundle path)
ROBOTS=${ROBOTS:-34} PAIRS=${PAIRS:-2} SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
OUT=${OUT:-/tmp/pairs} RUNS=${RUNS:-/tmp/pairs_runs}
BUNDLE=${BUNDLE:?the bundle (bench/gpu/bundle.sh)}
UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}
mkdir -p "$OUT" && rm -rf "$RUNS" && mkdir -p "$RUNS"
if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
  rm -rf "$UNPACKED" && mkdir -p "$UNPACKED" && tar xzf "$BUNDLE" -C "$UNPACKED"
  sha256sum <"$BUNDLE" >"$UNPACKED/.from"
fi
cd "$TREE" && source bench/gpu/env.sh "$UNPACKED"
export PYTHONPATH=$TREE:$PYTHONPATH MTL_SPLIT_MODELS=$TREE/models PYTHONUNBUFFERED=1 \
  ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
PY=$(command -v python3.12 || command -v python3)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader >>"$OUT/log.txt"
for i in $(seq 1 "$PAIRS"); do
  order="$FIRST $SECOND"; [ $((i % 2)) = 0 ] && order="$SECOND $FIRST"
  for value in $order; do
    label=${value//[^a-zA-Z0-9]/_}_$i
    timeout 55 "$PY" bench/fleet/run.py --device cuda --precision fp16 --edge-device cuda \
      --robots "$ROBOTS" --per-process 4 --seconds "$SECONDS_PER_RUN" --warmup 3 \
      --domain-id $((70 + i)) --out "$RUNS/$label" --server-param "$PARAM:=$value" \
      >"$RUNS/$label.log" 2>&1 || echo "$PARAM=$value run $i rc $?" >>"$OUT/log.txt"
    grep -E "fps per robot min" "$RUNS/$label.log" | sed "s/^/$PARAM=$value run $i: /" | tee -a "$OUT/log.txt"
  done
done
runs() { ls -d "$RUNS/${1//[^a-zA-Z0-9]/_}"_*/ 2>/dev/null | tr '\n' ','; }
"$PY" bench/fleet/compare.py --out "$OUT/pairs.md" "$PARAM $FIRST=$(runs "$FIRST")" \
  "$PARAM $SECOND=$(runs "$SECOND")" 2>&1 | tee -a "$OUT/log.txt"
