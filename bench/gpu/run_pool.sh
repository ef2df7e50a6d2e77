#!/usr/bin/env bash
# On the lent GPU machine (see bench/gpu/prelude.sh): the pool benchmark of issue #26 on one
# GPU, both parts in < 8 min wall. The runs write to $RUN_DIR (/tmp/pool_gpu); what comes back
# (the device tool returns at most 8 files) goes to $OUT (else bench/results/pool_gpu):
# pool_failover.json, pool_throughput.json (each run's results.json), pool_logs.tar.gz (the
# servers' and robot processes' logs, the failover's robot records), pool_tp_records.tar.gz
# (the throughput phases' robot records), nvidia-smi.txt.
#  1. failover: 2 pool server processes (CUDA, the default model, fp16, capacity measured:
#     the batch timings taken at the full batch) on the one GPU, 16 robots x 30 fps in one robot
#     process; kill -9 the busier server, restart it: blind time, local frames, stale
#     outputs, the survivor's announced capacity, rebalancing.
#  2. throughput: 1 vs 2 server processes under the same offered load, 96 robots x 30 fps
#     (2,880 frames/s: 2.5x what one process served on the H100, 1,139), and 1 process under
#     48 x 30 (1,440, the earlier run's load: its best), the admission wide open; 6 robot
#     processes of 16 (one kept 480 of 480 frames/s with 0.5 of the 2 CPU cores here at load
#     12, bench/pool/robot_rate.py).
#     Each phase reports what the robots achieved of the offered rate beside what was served.
#
#   bash bench/gpu/run_pool.sh                     # on the device, .carry/gpu_bundle carried
#   BUNDLE=none NEED_CUDA=0 DEVICE=cpu MODEL=tiny PRECISION=fp32 ROBOTS=8 TP_ROBOTS=4 \
#     SINGLE_ROBOTS=2 RATE=5 PER_PROCESS=4 OUT=/tmp/pool_check bash bench/gpu/run_pool.sh
#     # a check here, no GPU
#   PARTS=throughput TP_ROBOTS=72 SINGLE_ROBOTS=36 bash bench/gpu/run_pool.sh
#     # 2 vs 1 at the same offered load per process (36 robots each), no failover part
#   DEVICE=cuda:0,cuda:1 PARTS=throughput TP_ROBOTS=72 SINGLE_ROBOTS=36 bash bench/gpu/run_pool.sh
#     # the same with each server on its own GPU (a multi-GPU kind; failover.py --device list)
# Extra arguments go to both bench/pool/failover.py runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/prelude.sh run_pool
RESULTS=${OUT:-$ROOT/bench/results/pool_gpu}
RUN_DIR=${RUN_DIR:-/tmp/pool_gpu}
DEVICE=${DEVICE:-cuda} MODEL=${MODEL:-default} PRECISION=${PRECISION:-fp16}
ROBOTS=${ROBOTS:-16} TP_ROBOTS=${TP_ROBOTS:-96} SINGLE_ROBOTS=${SINGLE_ROBOTS:-48}
RATE=${RATE:-30} PER_PROCESS=${PER_PROCESS:-16} PARTS=${PARTS:-failover,throughput}
# Each part is bounded (worst case with the prelude and the grace to stop ~530 s; ~320 s
# expected); a part that runs over is interrupted (its finished phases kept: it stops its
# processes within 40 s) and reported, the other still runs, on its own ROS domain (nothing
# left of the first can reach it).
FAILOVER_S=${FAILOVER_S:-200} THROUGHPUT_S=${THROUGHPUT_S:-230}
common=(--device "$DEVICE" --model "$MODEL" --precision "$PRECISION" --rate "$RATE"
        --per-process "$PER_PROCESS" --start-timeout 60)
rm -rf "$RUN_DIR"
mkdir -p "$RESULTS" "$RUN_DIR"
status=0
[[ ",$PARTS," != *,failover,* ]] ||
timeout -s INT -k 40 "$FAILOVER_S" "$PY" bench/pool/failover.py "${common[@]}" \
  --robots "$ROBOTS" --out "$RUN_DIR/failover" "$@" || { status=$?; echo "run_pool: failover exit $status" >&2; }
[[ ",$PARTS," != *,throughput,* ]] || ROS_DOMAIN_ID=$((ROS_DOMAIN_ID + 1)) timeout -s INT -k 40 "$THROUGHPUT_S" "$PY" bench/pool/failover.py "${common[@]}" \
  --robots "$TP_ROBOTS" --single-robots "$SINGLE_ROBOTS" --no-failover --throughput --seconds 10 \
  --out "$RUN_DIR/throughput" "$@" ||
  { status=$?; echo "run_pool: throughput exit $status" >&2; }
for part in failover throughput; do
  [ ! -f "$RUN_DIR/$part/results.json" ] || cp "$RUN_DIR/$part/results.json" "$RESULTS/pool_$part.json"
done
# The throughput phases' robot records (every output's stamp and arrival: several MB) apart,
# so that the logs come back even if they are over the device tool's 16 MiB a file.
tar czf "$RESULTS/pool_logs.tar.gz" -C "$RUN_DIR" --exclude tiny_model --exclude features.cdr \
  --exclude 'robots_tp*.json' .
(cd "$RUN_DIR" && find . -name 'robots_tp*.json' -print0 | tar czf "$RESULTS/pool_tp_records.tar.gz" --null -T -)
command -v nvidia-smi >/dev/null && nvidia-smi >"$RESULTS/nvidia-smi.txt" 2>&1 || true
ls -l "$RESULTS"
exit "$status"
