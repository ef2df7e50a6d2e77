#!/usr/bin/env bash
# The two training jobs of 2026-11-28 on the lent GPU machine (device tool), in two calls:
#   bash bench/finetune/gpu_run.sh multi    the every-split run alone (train_shards,
#       test_shards + .whl), with the fix for batch-norm statistics;
#   bash bench/finetune/gpu_run.sh start    carries .carry/train_shards + .whl: starts, detached,
#       the one-model-every-split training (issue 14 item 1) from the default model;
#   bash bench/finetune/gpu_run.sh finish   carries .carry/{novel,mix_shards,old_shards,
#       test_shards} + .whl: fine-tunes the default on the novel-style recordings (depth labels
#       only, issue 13 item 5), evaluates before/after, waits for the multi-split run, evaluates
#       it per split, and puts models, logs and results under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
runs=/tmp/runs
mkdir -p $runs
mtl() { python3 -m mtl_split_core.cli "$@"; }

if [ "$1" = multi ]; then  # the every-split run alone, in the foreground (second try)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
  mtl train --init models/default --data .carry/train_shards --split s16,s8,s32 \
    --bottleneck 16,8,32 --device cuda --epochs 40 --batch-size 32 --lr 1e-3 \
    --time-budget ${MULTI_BUDGET:-330} --name mtl_split_every_split --out $runs/multi \
    >$runs/multi.log 2>&1
  echo "train exit $?"; grep -E "^epoch" $runs/multi.log | tail -n 2
  for s in s8 s16 s32; do
    mtl eval --model $runs/multi/model --data .carry/test_shards --split-set test --split $s \
      --codec all --device cuda --out $OUT/eval_test_${s}_multi.json | tail -n 4
  done
  rm -f $runs/multi/last.pt; cp $runs/multi.log $runs/multi/
  tar -C $runs -czf $OUT/multi.tgz multi; ls -la $OUT; exit 0
fi

if [ "$1" = start ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  setsid nohup python3 -m mtl_split_core.cli train --init models/default \
    --data .carry/train_shards --split s16,s8,s32 --bottleneck 16,8,32 --device cuda \
    --epochs 40 --batch-size 32 --lr 1e-3 --time-budget ${MULTI_BUDGET:-330} --name mtl_split_every_split \
    --out $runs/multi >$runs/multi.log 2>&1 < /dev/null &
  sleep 45; tail -n 3 $runs/multi.log; exit 0
fi

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
novel=""
for s in 1 2 3 4 5; do novel="$novel --data folder:.carry/novel/seed$s@0.14"; done
mtl train --init models/default --freeze-edge $novel --data sim:.carry/mix_shards@0.3 \
  --device cuda --epochs 200 --batch-size 32 --lr 1e-3 --time-budget ${FT_BUDGET:-240} \
  --name mtl_split_default_novel --out $runs/ft >$runs/ft.log 2>&1
echo "fine-tune exit $?"; tail -n 2 $runs/ft.log
for m in models/default $runs/ft/model; do
  tag=$(basename $(dirname $m))_$(basename $m)
  mtl eval --model $m --data folder:.carry/novel/seed6 --split-set train --codec q4-zstd/1 \
    --device cuda --out $OUT/eval_novel_$tag.json | tail -n 1
  mtl eval --model $m --data .carry/old_shards --split-set train --codec q4-zstd/1 \
    --device cuda --out $OUT/eval_old_$tag.json | tail -n 1
done
while pgrep -f "out $runs/multi" >/dev/null; do sleep 5; done
tail -n 3 $runs/multi.log
for s in s8 s16 s32; do
  for m in models/default $runs/multi/model; do
    [ $m = models/default ] && [ $s != s16 ] && continue
    mtl eval --model $m --data .carry/test_shards --split-set test --split $s --codec all \
      --device cuda --out $OUT/eval_test_${s}_$(basename $(dirname $m)).json | tail -n 4
  done
done
rm -f $runs/*/last.pt
tar -C $runs -czf $OUT/runs.tgz ft multi ft.log multi.log
ls -la $OUT
