#!/usr/bin/env bash
# Issue #27 on the lent GPU (device tool), one call: the shipped default fine-tuned to serve s8
# and s32 too (docs/RESULTS.md "One model for every split": new bottlenecks, a random split per
# step, the default's batch-norm statistics kept outside them) with the default itself as the
# teacher (`--distill W`: its outputs at s16 on the same frames), so s16 keeps its accuracy.
# HEADS=own (bench/gpu/train_split_heads.sh) gives the new splits a neck and heads of their own
# (`train --per-split-heads`): every weight s16 uses stays the default's bit for bit; HEADS=server
# (bench/gpu/train_split_server.sh) also their own backbone stages after the split
# (`train --per-split-server`).
# Recipes (RUNS) train side by side on the one GPU (each run is bound by Python's kernel
# launches, not by the GPU); each model is then scored on the held-out test frames at every split
# it serves and codec, and image upload, into its card (`eval --into-card`), the runs' scoring
# side by side too. Choose between them on the training set's own val frames (val_TAG.json), not
# on the test frames. check_TAG.txt: how many of the default's tensors each run changed and
# whether its s16 outputs are still the default's (bench/gpu/check_frozen_split.py).
# Expects, carried: $CARRY (default .carry/train27) with whl (cp312 wheels: constriction, h5py,
# tqdm, zstandard), shards_train (gen-data --seed 31, train + val) and shards_test (the test
# split of gen-data --seed 23, bench/rate_accuracy's frames).
# Usage there: RUNS="TAG:SPLITS:BOTTLENECKS:DISTILL:LR[:HEADS] ..." EPOCHS=24 BUDGET=420
#   bash bench/gpu/train_every_split.sh     (HEADS: shared, the default, own or server)
# (A smoke run elsewhere: DEVICE=cpu MAX_STEPS=2 WHEELS= CARRY=tiny OUT=/tmp/o bash ... skips the
# wheels.)
# SCORE='' skips the scoring on the held-out frames (device time; do it elsewhere with eval).
# Back in $OUT: TAG/{weights.pt,card.json} per run and logs.tar (train logs and train_log_TAG.csv,
# val_TAG.json: the val scores to choose by, check_TAG.txt, eval JSON).
set -uo pipefail
runs=${RUNS:-d1:s16,s8,s32:16,8,32:1:1e-3 d4:s16,s8,s32:16,8,32:4:1e-3}
epochs=${EPOCHS:-24}
budget=${BUDGET:-420}
source "$(dirname "$0")/train_prelude.sh"
for run in $runs; do  # tag:splits:bottlenecks:distill:lr[:heads]
  IFS=: read -r tag splits bns w lr heads <<< "$run"
  case ${heads:-shared} in
    shared) own= ;;
    own) own=--per-split-heads ;;
    server) own=--per-split-server ;;
    *) echo "RUNS $run: heads '$heads' is not shared, own or server" >&2; exit 2 ;;
  esac
  $cli train --data $carry/shards_train --init models/default --distill "$w" $own \
    --split "$splits" --bottleneck "$bns" --epochs "$epochs" --batch-size 32 --lr "$lr" \
    --workers "$workers" --device "$device" --time-budget "$budget" \
    ${MAX_STEPS:+--max-steps $MAX_STEPS} --name mtl_split_default --out "runs/$tag" \
    2>&1 | grep --line-buffered -v "it/s\]" > "$logs/train_$tag.log" &
done
wait
# Each run's model, then scored on the held-out frames at every split it serves (the card's
# bottlenecks) and image upload, into its card; weights first, so a cut call still brings them.
check() {  # tag: how many of the default's tensors the run changed (check_TAG.txt)
  python3 bench/gpu/check_frozen_split.py models/default "runs/$1/model" > "$logs/check_$1.txt" 2>&1
}
score() {  # tag splits
  local tag=$1 splits=$2 s
  check "$tag"
  for s in ${splits//,/ } input; do
    $cli eval --model "runs/$tag/model" --data $carry/shards_test --split-set test --split $s \
      --codec all --device "$device" --into-card --out "$logs/eval_${tag}_$s.json" 2>&1 \
      | grep -v "frame/s\]" >> "$logs/eval_$tag.log"
  done
  cp "runs/$tag/model/card.json" "$OUT/$tag/"
}
for run in $runs; do
  IFS=: read -r tag splits _ <<< "$run"
  [ -d "runs/$tag/model" ] || continue
  # Two files per run come back beside logs.tar: the device tool returns at most 8 (a run's
  # weights were left out when each run also sent its log and val scores).
  mkdir -p "$OUT/$tag" && cp "runs/$tag/model/weights.pt" "runs/$tag/model/card.json" "$OUT/$tag/"
  cp "runs/$tag/train_log.csv" "$logs/train_log_$tag.csv"
  grep '^VAL ' "$logs/train_$tag.log" > "$logs/val_$tag.json"
  if [ -n "${SCORE-1}" ]; then
    score "$tag" "$splits" &
  else  # SCORE='': no scoring here (on a CPU afterwards: `mtl-split eval --into-card`)
    check "$tag"
  fi
done
wait
cat "$logs"/check_*.txt "$logs"/eval_*.log 2>/dev/null
