#!/usr/bin/env bash
# On the lent GPU, one call (issue #23): (1) the server profile re-measured with the model that
# has every codec (models/default: its eb-<k>/1 and ebc-<k>/1 at s16) and image upload
# (split input), so `mtl-split plan` and the adaptive controller can weigh them; (1b) a 2-core
# CPU robot profile on two pinned cores of the idle host (ROBOT=1; the shared 2-core VM was
# too loaded to time anything, docs/BENCHMARKS.md); (2) with DATA,
# models/default's card metrics (`mtl-split eval --into-card`, every codec at s16, then
# --split input), the measured accuracy both weigh the options by. Run from the repository root
# on the device machine, carrying a folder of cp312 wheels (constriction, zstandard) and the
# held-out shards (the 300 test frames of `gen-data --frames 3000 --size 320x240 --seed 23`):
#
#   WHL=.carry/entropy/whl DATA=.carry/entropy/shards_test ROBOT=1 bash bench/gpu/profile_server.sh
#
# SEQS: labelled sequences for the temporal codecs' entry (the GPU host has no simulator to
# render them): bench/rate_accuracy.py's cached sequences, e.g. a copy of
# data/rate_accuracy/v2_sequences_seed23_n150_g50_640x480_320x240_noise0.npz (2.5 MB).
#
# Back in $OUT: h100_server.json (-> bench/profiles/), cpu2_robot.json (ROBOT=1), card.json
# (-> models/default/: only "metrics" changes, not the fingerprint), eval_s16.json,
# eval_input.json, profile.log.
set -uo pipefail
WHL=${WHL:?a folder of cp312 wheels: constriction, zstandard}
OUT=${OUT:-/tmp/profile_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$WHL"/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
STREAMS=()
[ -n "${SEQS:-}" ] && STREAMS=(--sequences-from "$SEQS")
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -c 'from PIL import features; print("pillow webp", features.check("webp"), "avif", features.check("avif"))'
  python3 -m mtl_split_core.cli profile --model models/default --device cuda \
    --images bench/frames.npz "${STREAMS[@]}" --out "$OUT/h100_server.json"
  if [ "${ROBOT:-0}" = 1 ]; then
    lscpu | grep -m1 "Model name"
    OMP_NUM_THREADS=2 taskset -c 0,1 python3 -m mtl_split_core.cli profile \
      --model models/default --device cpu --images bench/frames.npz "${STREAMS[@]}" \
      --out "$OUT/cpu2_robot.json"
  fi
  if [ -n "${DATA:-}" ]; then
    # The card records the data by the name given: a link with a name that says what it is.
    ln -sfn "$(cd "$DATA" && pwd)" /tmp/shards_seed23_test
    for split in s16 input; do
      (cd /tmp && python3 -m mtl_split_core.cli eval --model "$OLDPWD/models/default" \
        --data shards_seed23_test --split-set test --device cuda --split "$split" \
        --out "$OUT/eval_$split.json" --into-card) | grep -v "it/s\]"
    done
    cp models/default/card.json "$OUT/card.json"
  fi
} 2>&1 | tee "$OUT/profile.log"
