#!/usr/bin/env bash
# Issue 25's speed goals on the lent GPU in one call, on one card: this tree ("after") and an
# older checkout ("before"), alternating. (1) One robot end to end, camera 640x480 at 30 fps ->
# edge -> server, both on CUDA (bench/fleet/pipeline.py), then once more per tree with py-spy
# on both nodes: CPU and GIL ms per frame per stage ($OUT/stages.md); (2) the fleet at N = ROBOTS (16, 34,
# 48) robots x 30 fps into one server process (bench/fleet/run.py: CUDA fp16, CUDA graphs,
# max_batch 8), each run with py-spy on the server (the GIL holder's and every thread's
# samples). Which tree goes first alternates from one step to the next. (3) After, at the
# largest N, with the server's thread switch interval at SWITCH_MS (default 5 ms, the default
# before it became 1 ms; '' = skip), and with each server parameter of PARAM_ROWS (e.g.
# "batch4=max_batch:=4"; default none). Summary: $OUT/speed.md
# (bench/fleet/compare.py: frames/s, p50/p99, server CPU ms per frame, GIL/CPU split per thread),
# $OUT/stages.md, $OUT/trace.md (1a), $OUT/log.txt, $OUT/runs.tgz (every run's results, logs
# and py-spy summaries; five files in all, the device brings back at most 8).
#
#   BEFORE=.carry/before BUNDLE=.carry/gpu_bundle/bundle.tar.gz PYSPY_WHEEL_DIR=.carry/pyspy \
#     bash bench/gpu/run_speed.sh
#   ALT_DDS=bench/fleet/fastdds_shm_large.xml ...   # one more one-robot row on that profile
#   BASELINES= ...   # without the image-upload and local-inference rows (default: with them)
#   # plumbing check on this CPU (no bundle, the tree's own environment):
#   LOCAL=1 DEVICE=cpu PRECISION=fp32 MODEL=/tmp/tiny ROBOTS=1,2 SECONDS_PER_RUN=3 \
#     BEFORE=... bash bench/gpu/run_speed.sh
set -uo pipefail
AFTER=$(cd "$(dirname "$0")/../.." && pwd)
BEFORE=$(cd "${BEFORE:?the before checkout}" && pwd)
OUT=${OUT:-/tmp/speed}
RUNS=${RUNS:-/tmp/speed_runs}
ROBOTS=${ROBOTS:-16,34,48}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
WARMUP=${WARMUP:-3}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-fp16}
MODEL=${MODEL:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-55}   # seconds per run: 8 runs fit the device's 10-minute call
BUDGET_S=${BUDGET_S:-400}        # no fleet run starts after this many seconds (8 min in all)
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
mkdir -p "$OUT" && rm -rf "$RUNS" && mkdir -p "$RUNS"
LOG=$OUT/log.txt
if [ -n "${LOCAL:-}" ]; then
  PY=${PY:-python3}
else
  PY=${PY:-$(command -v python3.12 || command -v python3)}
  BUNDLE=${BUNDLE:?the bundle (bench/gpu/bundle.sh)}
  UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}
  if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
    rm -rf "$UNPACKED" && mkdir -p "$UNPACKED" && tar xzf "$BUNDLE" -C "$UNPACKED"
    sha256sum <"$BUNDLE" >"$UNPACKED/.from"
  fi
fi
PYSPY=${PYSPY:-$(command -v py-spy || true)}
if [ -z "$PYSPY" ] && [ -n "${PYSPY_WHEEL_DIR:-}" ]; then  # the wheel carries the binary
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/pyspy "$PYSPY_WHEEL_DIR"/py_spy-*.whl \
    && PYSPY=/tmp/pyspy/bin/py-spy
fi
[ -x "${PYSPY:-/none}" ] || { echo "no py-spy: runs without the thread split" | tee -a "$LOG"; PYSPY=; }

in_tree() {  # in_tree DIR CMD...: run CMD in DIR with its own packages first
  (cd "$1" && shift && { [ -n "${LOCAL:-}" ] || source "$AFTER/bench/gpu/env.sh" "$UNPACKED"; } &&
   export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MTL_SPLIT_MODELS=$PWD/models && "$@")
}
tree_of() { [ "$1" = before ] && echo "$BEFORE" || echo "$AFTER"; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$LOG"
echo "after $AFTER, before $BEFORE, robots $ROBOTS, $SECONDS_PER_RUN s per run, py-spy ${PYSPY:-none}" | tee -a "$LOG"

step=0
sides() { [ $((step % 2)) = 0 ] && echo "after before" || echo "before after"; }
pipeline() {  # pipeline LABEL TREE [pipeline.py arguments...]: one robot into $RUNS/pipeline_LABEL
  local label=$1 tree=$2 start=$SECONDS
  shift 2
  # This tree's pipeline.py (an older one lacks --py-spy / --edge-param) over either tree's
  # nodes; every process on PIPELINE_DDS (default: the profile the launch files give them).
  in_tree "$tree" timeout "$RUN_TIMEOUT" "$PY" "$AFTER/bench/fleet/pipeline.py" --device \
    "$DEVICE" --precision "$PRECISION" --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" \
    --domain-id $((60 + step)) ${MODEL:+--model "$MODEL"} --out "$RUNS/pipeline_$label" \
    ${PIPELINE_DDS:+--dds-profile "$PIPELINE_DDS"} "$@" >"$RUNS/pipeline_$label.log" 2>&1 \
    || echo "pipeline $label rc $?" | tee -a "$LOG"
  echo "pipeline $label: $((SECONDS - start)) s" | tee -a "$LOG"
  step=$((step + 1))
}
PIPELINE_DDS=${PIPELINE_DDS-$AFTER/config/fastdds.xml}
[ -z "${ALT_DDS:-}" ] || ALT_DDS=$(cd "$(dirname "$ALT_DDS")" && pwd)/$(basename "$ALT_DDS")
echo "pipeline DDS profile: ${PIPELINE_DDS:-Fast DDS defaults}" | tee -a "$LOG"
for side in $(sides); do  # (1) one robot, camera -> edge -> server
  pipeline "$side" "$(tree_of $side)"
done
# (1a) the same one robot under bench/fleet/frame_trace.py (TRACE=1, the default; '' = skip):
# a per-frame timeline of the critical path per tree, camera stamp -> probe ($OUT/trace.md; the
# wrappers' few microseconds per call included; on CUDA a hop ends where the host stops
# waiting: the edge's model at its graph's launch, its encode at the first device sync).
if [ -n "${TRACE-1}" ]; then
  for side in $(sides); do
    pipeline "trace_$side" "$(tree_of $side)" --trace
  done
fi
# (1b) after with the edge's executor as it was (single): what its new default is worth.
pipeline after_edge_single "$AFTER" --edge-param executor:=single
# (1b'') what a robot would pick instead, on the same frames and card (BASELINES=1, the
# default; '' = skip): image upload (split input: the letterboxed model-input image as WebP at
# UPLOAD_CODEC, default webp-q80/1, the quality that matches q4-zstd/1's accuracy on sim frames,
# docs/BENCHMARKS.md) into the same server, and local inference (no server: the edge node's own
# local path serves every frame).
UPLOAD_CODEC=${UPLOAD_CODEC:-webp-q80/1} BASELINES=${BASELINES-1}
if [ -n "$BASELINES" ]; then
  pipeline after_upload "$AFTER" --edge-param split:=input --edge-param "codec:=$UPLOAD_CODEC"
  pipeline after_local "$AFTER" --no-server
fi
# (1b*) after with the probe deserialising its messages (as a Python subscriber): the other
# rows' probe reads the stamp from the bytes, so its own rclpy deserialisation is not counted.
pipeline after_typed_probe "$AFTER" --typed-probe
# (1b') after on another DDS profile (ALT_DDS, e.g. bench/fleet/fastdds_shm_large.xml; '' =
# skip), between two more runs on the default one so that the pair is side by side in time.
if [ -n "${ALT_DDS:-}" ]; then
  pipeline after_again "$AFTER"
  PIPELINE_DDS=$ALT_DDS pipeline after_alt_dds "$AFTER"
fi
# (1c) the same one robot with py-spy on the edge and the server (perturbs the latency: the
# numbers above are without it): CPU and GIL ms per frame per stage (bench/fleet/stages.py).
if [ -n "$PYSPY" ]; then
  for side in $(sides); do
    pipeline "spy_$side" "$(tree_of $side)" --py-spy "$PYSPY"
  done
  "$PY" "$AFTER/bench/fleet/stages.py" "after=$RUNS/pipeline_spy_after" \
    "before=$RUNS/pipeline_spy_before" >"$OUT/stages.md" 2>>"$LOG"
fi
fleet() {  # fleet LABEL TREE N [run.py arguments...]: one fleet run into $RUNS/LABEL_nN
  local label=$1 tree=$2 n=$3 start=$SECONDS
  shift 3
  [ $SECONDS -lt "$BUDGET_S" ] || { echo "fleet $label N=$n: skipped (budget)" | tee -a "$LOG"; return; }
  in_tree "$tree" timeout "$RUN_TIMEOUT" "$PY" bench/fleet/run.py --device "$DEVICE" \
    --precision "$PRECISION" --edge-device "$DEVICE" --robots "$n" --per-process 4 \
    --seconds "$SECONDS_PER_RUN" --warmup "$WARMUP" --domain-id $((60 + step)) \
    ${MODEL:+--model "$MODEL"} ${PYSPY:+--py-spy "$PYSPY"} --out "$RUNS/${label}_n$n" "$@" \
    >"$RUNS/${label}_n$n.log" 2>&1 || echo "fleet $label N=$n rc $?" | tee -a "$LOG"
  grep -E "fps per robot" "$RUNS/${label}_n$n.log" | sed "s/^/$label N=$n: /" | tee -a "$LOG"
  echo "fleet $label N=$n: $((SECONDS - start)) s" | tee -a "$LOG"
}
step=1
for n in ${ROBOTS//,/ }; do  # (2) the fleet, one server process
  for side in $(sides); do
    fleet "$side" "$(tree_of $side)" "$n"
  done
  step=$((step + 1))
done
# (3) after, largest N, with another thread switch interval (server gil_switch_interval_ms,
# default 1 ms; SWITCH_MS '' skips it): what the default's change alone is worth.
if [ -n "${SWITCH_MS-5}" ]; then
  fleet "switch${SWITCH_MS:-5}ms" "$AFTER" "${ROBOTS##*,}" \
    --server-param "gil_switch_interval_ms:=${SWITCH_MS:-5}"
fi
# (3b) after, largest N, one row per PARAM_ROWS entry "label=NAME:=VALUE" (labels [a-z0-9]).
for row in ${PARAM_ROWS:-}; do
  fleet "${row%%=*}" "$AFTER" "${ROBOTS##*,}" --server-param "${row#*=}"
done

runs() { ls -d "$RUNS/$1"_n*/ 2>/dev/null | tr '\n' ',' ; }
side() { local r; r=$(runs "$1"); [ -z "$r" ] || echo "$1=$r"; }  # none: no fleet run (BUDGET_S=0)
"$PY" "$AFTER/bench/fleet/compare.py" --out "$OUT/speed.md" $(side after) $(side before) $(ls -d "$RUNS"/switch*/ 2>/dev/null | sed 's|.*/\(switch[^_]*\)_.*|\1=&|') \
  $(for row in ${PARAM_ROWS:-}; do r=$(runs "${row%%=*}"); \
    [ -n "$r" ] && echo "${row%%=*}=$r"; done) --pipeline "after=$RUNS/pipeline_after" \
  --pipeline "before=$RUNS/pipeline_before" \
  --pipeline "after, edge executor single=$RUNS/pipeline_after_edge_single" \
  --pipeline "after, probe deserialising (typed)=$RUNS/pipeline_after_typed_probe" \
  ${BASELINES:+--pipeline "after, image upload $UPLOAD_CODEC=$RUNS/pipeline_after_upload"} \
  ${BASELINES:+--pipeline "after, local inference (no server)=$RUNS/pipeline_after_local"} \
  ${ALT_DDS:+--pipeline "after (again)=$RUNS/pipeline_after_again"} \
  ${ALT_DDS:+--pipeline "after, DDS $(basename "$ALT_DDS")=$RUNS/pipeline_after_alt_dds"} 2>&1 | tee -a "$LOG"
for side in after before; do  # the traced runs' timelines side by side
  f=$RUNS/pipeline_trace_$side/pipeline.md
  [ -f "$f" ] && { echo "## $side"; echo; cat "$f"; echo; }
done >"$OUT/trace.md"
# Back: speed.md, log.txt, and one tarball of every run's results and py-spy summaries.
for f in "$RUNS"/*/logs/n*/pyspy_server_*.txt; do
  [ -f "$f" ] && "$PY" "$AFTER/bench/fleet/stacks.py" "$f" --top 30 >"${f%.txt}.summary" 2>&1
done
tar czf "$OUT/runs.tgz" -C "$RUNS" --exclude='streams.npz' --exclude='pyspy_*.txt' . 2>/dev/null
