#!/usr/bin/env bash
# Training runs on the lent GPU box (device tool): the default model plus the ablations of
# docs/RESULTS.md, concurrently (the models are small; one H100 runs them side by side).
# Expects .carry/shards (mtl-split gen-data --pack), .carry/efficientnet-lite0-fp16.pth and .whl/.
# Usage there: bash bench/train_device.sh SECONDS_PER_RUN
set -uo pipefail
budget=${1:-400}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export MTL_SPLIT_EFFNET_LITE0_WEIGHTS=$PWD/.carry/efficientnet-lite0-fp16.pth
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
common="--shards .carry/shards --device cuda --epochs 60 --batch-size 32 --time-budget $budget"
run() {  # name, extra args
  local name=$1; shift
  python3 -m mtl_split_core.cli train $common --out runs/$name --name $name "$@" \
    >runs/$name.log 2>&1
  echo "$name: exit $?"; grep -E "^(VAL|epoch [0-9]+:)" runs/$name.log | tail -n 2
}
mkdir -p runs
run default --split s16 --bottleneck 16 --quant-bits 8 &
run stl_detection --split s16 --bottleneck 16 --tasks detection &
run stl_segmentation --split s16 --bottleneck 16 --tasks segmentation &
run stl_depth --split s16 --bottleneck 16 --tasks depth &
run s16_nobottleneck --split s16 --bottleneck 0 --quant-bits 8 &
run s8_b8 --split s8 --bottleneck 8 --quant-bits 8 &
wait
for d in runs/*/; do
  n=$(basename "$d"); rm -f "$d/last.pt"; cp "runs/$n.log" "$d/"
  tar -C runs -cf "$OUT/$n.tar" "$n"
done
ls -la "$OUT"
