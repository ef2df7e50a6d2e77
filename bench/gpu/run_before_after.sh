#!/usr/bin/env bash
# On the lent GPU machine, one call: this tree ("after") and an older checkout ("before") on the
# same card. (1) bench/gpu/check_postprocess.py (after only: the device post-processing gives
# the host functions' bytes), (2) each tree's post-processing per frame
# (bench/postprocess_bench.py, eager server, fp16), (3) each tree's fleet run
# (bench/gpu/run_fleet.sh, SKIP_PIPELINE=1). Only the summaries go to $OUT (the device tool
# brings back at most 8 files): check.log, post_{after,before}.json, fleet_{after,before}.md/json.
#
#   BEFORE=/path/to/before BUNDLE=/path/to/bundle.tar.gz ROBOTS=1,16,32 SECONDS_PER_RUN=8 \
#     bash bench/gpu/run_before_after.sh
set -uo pipefail
AFTER=$(cd "$(dirname "$0")/../.." && pwd)
BEFORE=${BEFORE:?the before checkout}
OUT=${OUT:-/tmp/before_after}
mkdir -p "$OUT"
export BUNDLE ROBOTS=${ROBOTS:-1,16,32} SECONDS_PER_RUN=${SECONDS_PER_RUN:-8} SKIP_PIPELINE=1
export PYTHONUNBUFFERED=1
PY=${PY:-$(command -v python3.12 || command -v python3)}
UNPACKED=${UNPACKED:-/tmp/mtl_split_gpu_bundle}
if [ ! -f "$UNPACKED/.from" ] || [ "$(cat "$UNPACKED/.from")" != "$(sha256sum <"$BUNDLE")" ]; then
  rm -rf "$UNPACKED" && mkdir -p "$UNPACKED" && tar xzf "$BUNDLE" -C "$UNPACKED"
  sha256sum <"$BUNDLE" >"$UNPACKED/.from"
fi

in_tree() {  # in_tree DIR CMD...: run CMD in DIR with its own packages first
  (cd "$1" && shift && source "$AFTER/bench/gpu/env.sh" "$UNPACKED" &&
   export PYTHONPATH=$PWD:$PYTHONPATH MTL_SPLIT_MODELS=$PWD/models && "$@")
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/check.log"
in_tree "$AFTER" timeout 45 "$PY" bench/gpu/check_postprocess.py cuda 2>&1 | tail -8 | tee -a "$OUT/check.log"
for side in after before; do
  tree=$AFTER; [ $side = before ] && tree=$BEFORE
  in_tree "$tree" timeout 40 "$PY" "$AFTER/bench/postprocess_bench.py" --device cuda \
    --precision fp16 --batch 16 --repeats 8 --json "$OUT/post_$side.json" >/dev/null 2>&1 ||
    echo "post $side failed" | tee -a "$OUT/check.log"
done
for side in after before; do
  tree=$AFTER; [ $side = before ] && tree=$BEFORE
  (cd "$tree" && RESULTS=/tmp/fleet_$side timeout "${FLEET_TIMEOUT:-80}" bash bench/gpu/run_fleet.sh \
     --warmup 3 >/tmp/fleet_$side.log 2>&1) || echo "fleet $side rc $?" | tee -a "$OUT/check.log"
  cp /tmp/fleet_$side/results.md "$OUT/fleet_$side.md" 2>/dev/null
  cp /tmp/fleet_$side/results.json "$OUT/fleet_$side.json" 2>/dev/null
  grep -E "^N=|fps per robot|run_fleet" /tmp/fleet_$side.log >>"$OUT/check.log"
done
