#!/usr/bin/env bash
# Rate-trained entropy-coded codecs (eb-<k>/1) for models/default on the lent GPU (device tool),
# then every codec of the new card, and the base's float network and q4, on the held-out frames.
#
# Needs this branch's train-eb (--shape-bytes, --anchor: mtl_split_core/train_entropy.py).
# Run from the repository root with .carry/entropy carried; it holds whl/ (cp312 wheels:
# constriction, zstandard, tqdm; h5py is not needed), shards_train/ (gen-data --seed 31, train
# + val) and shards_test/ (the test split of gen-data --seed 23, the benchmark's 300 frames).
# The tree and all of .carry/entropy exceed the tool's 64 MiB: carry the three wheels, the
# train frames alone and the test frames:
#   python bench/entropy/subset_shards.py .carry/entropy/shards_train \
#       .carry/entropy/shards_trainonly --split train          # here, once (3 s, 26 MB)
#   device run (timeout_s 600):
#   command: TRAIN_DATA=.carry/entropy/shards_trainonly bash bench/entropy/train_device.sh
#   carry: [".carry/entropy/whl/constriction-0.5.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
#           ".carry/entropy/whl/zstandard-0.25.0-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
#           ".carry/entropy/whl/tqdm-4.70.1-py3-none-any.whl",
#           ".carry/entropy/shards_trainonly", ".carry/entropy/shards_test"]
#   (tree ~24.5 MB + carry ~35.6 MB; all of .carry/entropy is 48 MB and does not fit.)
# SECONDS: training steps' budget (default 240; the whole script stays inside 540 s on an H100).
# A dry run elsewhere: CARRY=folder (the same layout; no whl/ there: nothing installed),
# DEVICE=cpu, OUT=folder, TOTAL=seconds (the whole script's limit, default 540); TRAIN_DATA:
# the training shards (default $CARRY/shards_train).
# Back in $OUT: card.json, weights.pt, entropy_model.pt, frozen/{card.json,weights.pt} (the
# frozen-bottleneck variant, when time allowed) and logs.tar (train*.log, result*.json,
# eval.log and the eval JSON of every codec: eval_eb.json, eval_frozen.json,
# eval_default_float.json, eval_default_q4-zstd.json).
set -uo pipefail
budget=${1:-240}
carry=${CARRY:-.carry/entropy}
device=${DEVICE:-cuda}
total=${TOTAL:-540}
train_data=${TRAIN_DATA:-$carry/shards_train}
logs=$(mktemp -d)
runs=$(mktemp -d)
start=$SECONDS
trap 'echo "total $((SECONDS - start)) s" >>"$logs/train.log"; tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
if [ -d "$carry/whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$carry"/whl/*.whl || exit 1
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$logs/gpu.txt"
quiet() { grep --line-buffered -v "it/s\]\|frame/s\]"; }
train() {  # train() FOLDER SECONDS [train-eb options...]: the card into $runs/FOLDER
  local folder=$1 seconds=$2
  shift 2
  python3 -m mtl_split_core.cli train-eb --model models/default --data "$train_data" \
    --out "$runs/$folder" --device "$device" --batch-size 24 --time-budget "$seconds" \
    --no-val --targets 300,450,600,800,1200,3000 --name mtl_split_default_eb "$@" 2>&1 | quiet
}
evaluate() {  # evaluate() MODEL NAME [eval options...]: the held-out frames, JSON into logs
  local model=$1 name=$2
  shift 2
  python3 -m mtl_split_core.cli eval --model "$model" --data "$carry/shards_test" \
    --split-set test --device "$device" --out "$logs/eval_$name.json" "$@" 2>&1 | quiet
}
# 1. The recipe (mtl_split_core/train_entropy.py): tasks weighted by the model's own losses,
# per-task distillation, the float network anchored, only the points of 400..1500 B shape the
# shared bottleneck; all six points every step.
train eb "$budget" --shape-bytes 400,1500 --anchor 1000 --distill 1 | tee "$logs/train.log"
[ -d "$runs/eb/model" ] || exit 1
cp "$runs/eb/model/card.json" "$runs/eb/model/weights.pt" "$runs/eb/entropy_model.pt" "$OUT/"
cp "$runs/eb/result.json" "$logs/"
echo "training done at $((SECONDS - start)) s" | tee -a "$logs/train.log"
# Every codec of the new card (float, f16, q8, q4, eb-0..5; mtl-split eval's own loop), then
# the base model's float network and q4 on the same frames.
evaluate "$runs/eb/model" eb | tee "$logs/eval.log"
for c in float q4-zstd/1; do
  evaluate models/default "default_${c%%/*}" --codec "$c" | tee -a "$logs/eval.log"
done
# 2. If time is left ($total s in all; ~100 s of set-up and eval around it): the safe variant,
# the bottleneck frozen (float network and edge exactly the base's) with joint steps, so only
# the per-channel gains and densities learn from the tasks and the rate. Its card: $OUT/frozen/.
left=$((total - 100 - (SECONDS - start)))
if [ "$left" -ge 30 ]; then
  seconds=$((left < 90 ? left : 90))
  train frozen "$seconds" --freeze-bottleneck | tee "$logs/train_frozen.log"
  if [ -d "$runs/frozen/model" ]; then
    mkdir -p "$OUT/frozen"
    cp "$runs/frozen/model/card.json" "$runs/frozen/model/weights.pt" "$OUT/frozen/"
    cp "$runs/frozen/result.json" "$logs/result_frozen.json"
    evaluate "$runs/frozen/model" frozen | tee -a "$logs/eval.log"
  fi
else
  echo "no time left for the frozen-bottleneck variant ($left s)" | tee -a "$logs/train.log"
fi
