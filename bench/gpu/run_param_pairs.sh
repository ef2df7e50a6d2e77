#!/usr/bin/env bash
# One setting's worth on the lent GPU, this tree at value A and at B, alternating (ABBA...),
# PAIRS times each: the fleet at ROBOTS robots x 30 fps into one server process
# (bench/fleet/run.py, CUDA fp16, as run_speed.sh's fleet rows) and, with ONE_ROBOT=1, one robot
# camera -> edge -> server (bench/fleet/pipeline.py). The setting is a server parameter (PARAM)
# or an environment variable of every process of the run (ENV_VAR, e.g. an rmw setting; value
# "-": unset, each process at its own default), or the robots' codec (CODEC=1: A and B are
# codecs, e.g. ebc-3/1 and q4-zstd/1; the fleet's recorded streams and the one robot's edge).
# py-spy on the fleet's server when PYSPY_WHEEL_DIR holds its wheel. The one robot runs on
# PIPELINE_DDS, by default the profile the launch files give the nodes (config/fastdds.xml:
# UDP; '' = Fast DDS's defaults, whose 512 KB shared-memory segments do not hold a 640x480
# image), as run_speed.sh's. Summary: $OUT/pairs.md (bench/fleet/compare.py over every run of
# each value) and $OUT/log.txt.
#
#   PARAM=max_batch A=8 B=16 BUNDLE=.carry/gpu_bundle/bundle.tar.gz bash bench/gpu/run_param_pairs.sh
#   CODEC=1 A=ebc-3/1 B=q4-zstd/1 ONE_ROBOT=1 BUNDLE=... bash bench/gpu/run_param_pairs.sh
#   ENV_VAR=RMW_FASTRTPS_PUBLICATION_MODE A=- B=SYNCHRONOUS ONE_ROBOT=1 \
#     PYSPY_WHEEL_DIR=.carry/pyspy BUNDLE=... bash bench/gpu/run_param_pairs.sh
set -uo pipefail
TREE=$(cd "$(dirname "$0")/../.." && pwd)
PARAM=${PARAM:-} ENV_VAR=${ENV_VAR:-} CODEC=${CODEC:-}
[ -n "$PARAM$ENV_VAR$CODEC" ] || { echo "run_param_pairs.sh: set PARAM, ENV_VAR or CODEC" >&2; exit 2; }
FIRST=${A:?its first value} SECOND=${B:?its second value}  # env.sh sets its own A and B
ROBOTS=${ROBOTS:-34} PAIRS=${PAIRS:-2} SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
OUT=${OUT:-/tmp/pairs} RUNS=${RUNS:-/tmp/pairs_runs}
BUNDLE=${BUNDLE:?the bundle (bench/gpu/bundle.sh)}
UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}
NAME=${PARAM:-${ENV_VAR:-${CODEC:+codec}}}
PIPELINE_DDS=${PIPELINE_DDS-$TREE/config/fastdds.xml}
mkdir -p "$OUT" && rm -rf "$RUNS" && mkdir -p "$RUNS"
if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
  rm -rf "$UNPACKED" && mkdir -p "$UNPACKED" && tar xzf "$BUNDLE" -C "$UNPACKED"
  sha256sum <"$BUNDLE" >"$UNPACKED/.from"
fi
cd "$TREE" && source bench/gpu/env.sh "$UNPACKED"
export PYTHONPATH=$TREE:$PYTHONPATH MTL_SPLIT_MODELS=$TREE/models PYTHONUNBUFFERED=1 \
  ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# This tree's node executables, not the bundle's copies (node_processes looks them up in the
# first colcon prefix): an executable's own settings (e.g. the server's publication mode) count.
PREFIX=$RUNS/prefix NODES=$RUNS/prefix/mtl_split/lib/mtl_split
mkdir -p "$NODES" && cp "$TREE"/nodes/* "$NODES"/
export COLCON_PREFIX_PATH=$PREFIX:$COLCON_PREFIX_PATH
PY=$(command -v python3.12 || command -v python3)
PYSPY=
if [ -n "${PYSPY_WHEEL_DIR:-}" ]; then  # the wheel carries the binary
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/pyspy "$PYSPY_WHEEL_DIR"/py_spy-*.whl \
    && PYSPY=/tmp/pyspy/bin/py-spy
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader >>"$OUT/log.txt"
echo "one robot's DDS profile: ${PIPELINE_DDS:-Fast DDS defaults}" >>"$OUT/log.txt"
with() {  # with VALUE CMD...: CMD with the setting at VALUE
  local value=$1
  shift
  if [ -n "$CODEC" ]; then  # the fleet records its streams with it, one robot's edge runs it
    case "$*" in *run.py*) "$@" --codec "$value" ;; *) "$@" --edge-param "codec:=$value" ;; esac
  elif [ -z "$ENV_VAR" ]; then "$@" --server-param "$PARAM:=$value"
  elif [ "$value" = - ]; then env -u "$ENV_VAR" "$@"
  else env "$ENV_VAR=$value" "$@"; fi
}
label_of() { [ "$1" = - ] && echo unset || echo "${1//[^a-zA-Z0-9]/_}"; }
for i in $(seq 1 "$PAIRS"); do
  order="$FIRST $SECOND"; [ $((i % 2)) = 0 ] && order="$SECOND $FIRST"
  for value in $order; do
    label=$(label_of "$value")_$i
    with "$value" timeout 55 "$PY" bench/fleet/run.py --device cuda --precision fp16 \
      --edge-device cuda --robots "$ROBOTS" --per-process 4 --seconds "$SECONDS_PER_RUN" \
      --warmup 3 --domain-id $((70 + i)) --out "$RUNS/$label" ${PYSPY:+--py-spy "$PYSPY"} \
      >"$RUNS/$label.log" 2>&1 || echo "$NAME=$value run $i rc $?" >>"$OUT/log.txt"
    grep -E "fps per robot min" "$RUNS/$label.log" | sed "s|^|$NAME=$value run $i: |" | tee -a "$OUT/log.txt"
    if [ -n "${ONE_ROBOT:-}" ]; then
      with "$value" timeout 55 "$PY" bench/fleet/pipeline.py --device cuda --precision fp16 \
        --seconds "$SECONDS_PER_RUN" --warmup 3 --domain-id $((80 + i)) \
        ${PIPELINE_DDS:+--dds-profile "$PIPELINE_DDS"} \
        --out "$RUNS/one_$label" >"$RUNS/one_$label.log" 2>&1 \
        || echo "one robot $NAME=$value run $i rc $?" >>"$OUT/log.txt"
    fi
  done
done
runs() { ls -d "$RUNS/$(label_of "$1")"_*/ 2>/dev/null | tr '\n' ','; }
pipelines() {  # "--pipeline" "NAME VALUE, run I=DIR" for each one-robot run of VALUE
  local d
  for d in "$RUNS/one_$(label_of "$1")"_*/; do
    [ -d "$d" ] && d=${d%/} && printf '%s\n' --pipeline "$NAME $1, run ${d##*_}=$d"
  done
}
mapfile -t one < <(pipelines "$FIRST"; pipelines "$SECOND")
"$PY" bench/fleet/compare.py --out "$OUT/pairs.md" "$NAME $FIRST=$(runs "$FIRST")" \
  "$NAME $SECOND=$(runs "$SECOND")" "${one[@]}" 2>&1 | tee -a "$OUT/log.txt"
for f in "$RUNS"/*/logs/n*/pyspy_server_*.txt; do
  [ -f "$f" ] && "$PY" bench/fleet/stacks.py "$f" --top 30 >"${f%.txt}.summary" 2>&1
done
tar czf "$OUT/runs.tgz" -C "$RUNS" --exclude='streams.npz' --exclude='pyspy_*.txt' . 2>/dev/null
