#!/usr/bin/env bash
# Entropy-coded codecs for the default model on the lent GPU (device tool), then the eval of
# every codec on the held-out frames. Run from a bundle folder holding a copy of mtl_split_core/,
# whl/ (cp312 wheels: constriction, zstandard, h5py, tqdm), shards_train/ (gen-data --seed 31)
# and shards_test/ (the test split of gen-data --seed 23); the repository's models/default is
# two folders up. Usage there: cd BUNDLE && bash train_device.sh SECONDS
# Back in $OUT: card.json, weights.pt, entropy_model.pt and logs.tar (logs + eval JSON), at most
# 8 files as the device tool allows.
set -uo pipefail
budget=${1:-300}
logs=$(mktemp -d)
trap 'tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m mtl_split_core.cli train-eb --model ../../models/default --data shards_train \
  --out runs/eb --device cuda --batch-size 24 --time-budget "$budget" --no-val \
  --targets 300,500,800,1200,1800,3000 --name mtl_split_default_eb 2>&1 | grep -v "it/s\]" \
  | tee "$logs/train.log"
[ -d runs/eb/model ] || exit 1
cp runs/eb/model/card.json runs/eb/model/weights.pt runs/eb/entropy_model.pt "$OUT/"
cp runs/eb/result.json "$logs/"
# The held-out frames through every codec of the new card (mtl-split eval's own loop), then
# through the default model (its float network and q4) for the comparison.
python3 -m mtl_split_core.cli eval --model runs/eb/model --data shards_test --split-set test \
  --device cuda --out "$logs/eval_eb.json" 2>&1 | grep -v "it/s\]" | tee "$logs/eval.log"
for c in float q4-zstd/1; do
  python3 -m mtl_split_core.cli eval --model ../../models/default --data shards_test \
    --split-set test --device cuda --codec "$c" --out "$logs/eval_default_${c%%/*}.json" 2>&1 \
    | grep -v "it/s\]" | tee -a "$logs/eval.log"
done
