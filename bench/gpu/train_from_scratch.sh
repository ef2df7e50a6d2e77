#!/usr/bin/env bash
# Issue #23 on the lent GPU (device tool), one call: models trained from ImageNet with the
# default's from-scratch recipe (docs/TRAINING.md section 2: s16, bottleneck 16, 8-bit fake
# quantization, q4-zstd/1), one run per backbone, side by side on the one GPU so they see the
# same machine and time budget (each run is bound by Python's kernel launches, not the GPU).
# What for: the plain and the anti-aliased EfficientNet-Lite0 as an A/B pair; their entropy
# tables (train-eb) and the rate-accuracy bench then run on a CPU.
# Then each model's edge and server, eager against CUDA graphs in fp16 (check_cuda_graphs.py).
# Expects, carried: $CARRY (default .carry/train27) with whl (cp312 wheels: constriction, tqdm,
# zstandard) and shards_train (gen-data --seed 31, train + val); $IMAGENET, the ImageNet state
# dict of EfficientNet-Lite0 (the package's .pth, e.g. an fp16 copy: the package is not there).
# Usage there: RUNS="TAG:BACKBONE ..." EPOCHS=44 BUDGET=480 IMAGENET=.carry/imagenet/lite0_fp16.pth \
#   bash bench/gpu/train_from_scratch.sh
# (A smoke run elsewhere: DEVICE=cpu MAX_STEPS=1 WHEELS= CARRY=tiny OUT=/tmp/o bash ...)
# Back in $OUT: TAG/{weights.pt,card.json} per run and logs.tar (train logs, train_log_TAG.csv,
# val_TAG.json: the val scores, check.txt).
set -uo pipefail
runs=${RUNS:-plain:efficientnet_lite0 aa:efficientnet_lite0_aa}
epochs=${EPOCHS:-44}
budget=${BUDGET:-480}
source "$(dirname "$0")/train_prelude.sh"
[ -n "${IMAGENET:-}" ] && export MTL_SPLIT_EFFNET_LITE0_WEIGHTS=$IMAGENET
for run in $runs; do
  IFS=: read -r tag backbone <<< "$run"
  $cli train --data "$carry/shards_train" --backbone "$backbone" --split s16 --bottleneck 16 \
    --quant-bits 8 --codec q4-zstd/1 --epochs "$epochs" --batch-size 32 --workers "$workers" \
    --device "$device" --time-budget "$budget" ${MAX_STEPS:+--max-steps $MAX_STEPS} \
    --name "mtl_split_$tag" --out "runs/$tag" \
    2>&1 | grep --line-buffered -v "it/s\]" > "$logs/train_$tag.log" &
done
wait
for run in $runs; do
  IFS=: read -r tag _ <<< "$run"
  [ -d "runs/$tag/model" ] || { echo "$tag: no model (train_$tag.log)"; tail -5 "$logs/train_$tag.log"; continue; }
  mkdir -p "$OUT/$tag" && cp "runs/$tag/model/weights.pt" "runs/$tag/model/card.json" "$OUT/$tag/"
  cp "runs/$tag/train_log.csv" "$logs/train_log_$tag.csv"
  grep '^VAL ' "$logs/train_$tag.log" > "$logs/val_$tag.json"
  tail -2 "$logs/val_$tag.json"
  if [ "$device" = cuda ]; then
    python3 bench/gpu/check_cuda_graphs.py "runs/$tag/model" "$carry/shards_train" 2>&1 \
      | tail -3 | tee -a "$logs/check.txt"
  fi
done
