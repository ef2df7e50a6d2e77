#!/usr/bin/env bash
# Rate-trained entropy-coded codecs (eb-<k>/1) for models/default on the lent GPU (device tool),
# then every codec of the new card, and the base's float network and q4, on the held-out frames.
#
# Run from the repository root with .carry/entropy carried; it holds whl/ (cp312 wheels:
# constriction, zstandard, h5py, tqdm), shards_train/ (gen-data --seed 31, train + val) and
# shards_test/ (the test split of gen-data --seed 23, the benchmark's 300 frames):
#   device run: command "bash bench/entropy/train_device.sh [SECONDS]", carry [".carry/entropy"]
# SECONDS: training steps' budget (default 270; the whole script stays inside 540 s on an H100).
# Back in $OUT: card.json, weights.pt, entropy_model.pt and logs.tar (train.log, result.json,
# eval.log and the eval JSON of every codec: eval_eb.json, eval_default_float.json,
# eval_default_q4-zstd.json).
set -uo pipefail
budget=${1:-270}
carry=.carry/entropy
logs=$(mktemp -d)
runs=$(mktemp -d)
start=$SECONDS
trap 'echo "total $((SECONDS - start)) s" >>"$logs/train.log"; tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$carry"/whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
quiet() { grep --line-buffered -v "it/s\]\|frame/s\]"; }
# The recipe (mtl_split_core/train_entropy.py): tasks weighted by the model's own losses,
# per-task distillation, the float network anchored, only the points of 400..1500 B shape the
# shared bottleneck; all six points every step.
python3 -m mtl_split_core.cli train-eb --model models/default --data "$carry/shards_train" \
  --out "$runs/eb" --device cuda --batch-size 24 --time-budget "$budget" --no-val \
  --targets 300,450,600,800,1200,3000 --shape-bytes 400,1500 --anchor 10 --distill 1 \
  --name mtl_split_default_eb 2>&1 | quiet | tee "$logs/train.log"
[ -d "$runs/eb/model" ] || exit 1
cp "$runs/eb/model/card.json" "$runs/eb/model/weights.pt" "$runs/eb/entropy_model.pt" "$OUT/"
cp "$runs/eb/result.json" "$logs/"
echo "training done at $((SECONDS - start)) s" | tee -a "$logs/train.log"
# The held-out frames through every codec of the new card (float, f16, q8, q4, eb-0..5;
# mtl-split eval's own loop), then through the base model (its float network and q4).
python3 -m mtl_split_core.cli eval --model "$runs/eb/model" --data "$carry/shards_test" \
  --split-set test --device cuda --out "$logs/eval_eb.json" 2>&1 | quiet | tee "$logs/eval.log"
for c in float q4-zstd/1; do
  python3 -m mtl_split_core.cli eval --model models/default --data "$carry/shards_test" \
    --split-set test --device cuda --codec "$c" --out "$logs/eval_default_${c%%/*}.json" 2>&1 \
    | quiet | tee -a "$logs/eval.log"
done
