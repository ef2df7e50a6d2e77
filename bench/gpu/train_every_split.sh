#!/usr/bin/env bash
# Issue #27 on the lent GPU (device tool), one call: (1) the shipped default fine-tuned to serve
# s8 and s32 too (docs/RESULTS.md "One model for every split": new bottlenecks, a random split
# per step, the default's batch-norm statistics kept outside them), then every split and codec
# of it, and image upload, scored on the held-out test frames into its card (`eval
# --into-card`); (2) seconds per epoch and
# images/s of training from scratch on generated COCO-layout data (bench/train_epoch_bench.py).
# Expects, carried: .carry/train27/whl (cp312 wheels: constriction, h5py, tqdm, zstandard),
# .carry/train27/shards_train (gen-data --seed 31, train + val) and .carry/train27/shards_test
# (the test split of gen-data --seed 23, bench/rate_accuracy's frames).
# Usage there: BUDGET=200 bash bench/gpu/train_every_split.sh
# Back in $OUT: card.json + weights.pt (the new default) and logs.tar (logs, eval JSON, epoch
# table).
set -uo pipefail
budget=${BUDGET:-200}
carry=.carry/train27
logs=$(mktemp -d)
trap 'tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site $carry/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
cli="python3 -m mtl_split_core.cli"
$cli train --data $carry/shards_train --init models/default \
  --split s16,s8,s32 --bottleneck 16,8,32 --epochs 40 --batch-size 32 --lr 1e-3 --workers 8 \
  --device cuda --time-budget "$budget" --name mtl_split_default --out runs/every 2>&1 \
  | grep -v "it/s\]" | tee "$logs/train.log"
[ -d runs/every/model ] || exit 1
cp runs/every/train_log.csv "$logs/"
for s in s16 s8 s32 input; do
  $cli eval --model runs/every/model --data $carry/shards_test --split-set test --split $s \
    --codec all --device cuda --into-card --out "$logs/eval_$s.json" 2>&1 | grep -v "it/s\]" \
    | tee -a "$logs/eval.log"
done
cp runs/every/model/card.json runs/every/model/weights.pt "$OUT/"
python3 bench/train_epoch_bench.py --out "$logs/epoch" --workers 8,16 2>&1 | tail -n 12
