#!/usr/bin/env bash
# Issue #27 on the lent GPU (device tool), one call: the shipped default fine-tuned to serve s8
# and s32 too (docs/RESULTS.md "One model for every split": new bottlenecks, a random split per
# step, the default's batch-norm statistics kept outside them) with the default itself as the
# teacher (`--distill W`: its outputs at s16 on the same frames), so s16 keeps its accuracy.
# Two distillation weights train side by side on the one GPU (each run is bound by Python's
# kernel launches, not by the GPU); the one with the better validation score at s16 (mAP@0.5 +
# mIoU + δ<1.25 on the training set's own val frames, never the test frames) is then scored on
# the held-out test frames at every split and codec, and image upload, into its card (`eval
# --into-card`).
# Expects, carried: .carry/train27/whl (cp312 wheels: constriction, h5py, tqdm, zstandard),
# .carry/train27/shards_train (gen-data --seed 31, train + val) and .carry/train27/shards_test
# (the test split of gen-data --seed 23, bench/rate_accuracy's frames).
# Usage there: WEIGHTS="1 4" EPOCHS=24 bash bench/gpu/train_every_split.sh
# (A smoke run elsewhere: DEVICE=cpu MAX_STEPS=2 WHEELS= OUT=/tmp/o bash ... skips the wheels.)
# Back in $OUT: card.json + weights.pt of the chosen run (the new default; weights as soon as it
# is chosen, the card with its metrics last) and logs.tar (both runs' logs and eval JSON).
set -uo pipefail
weights=${WEIGHTS:-1 4}
epochs=${EPOCHS:-24}
carry=.carry/train27
device=${DEVICE:-cuda}
wheels=${WHEELS-$carry/whl}
logs=$(mktemp -d)
trap 'tar -C "$logs" -cf "$OUT/logs.tar" .' EXIT
if [ -n "$wheels" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$logs/gpu.txt"
cli="python3 -m mtl_split_core.cli"
for w in $weights; do
  $cli train --data $carry/shards_train --init models/default --distill "$w" \
    --split s16,s8,s32 --bottleneck 16,8,32 --epochs "$epochs" --batch-size 32 --lr 1e-3 \
    --workers 7 --device "$device" --time-budget 420 ${MAX_STEPS:+--max-steps $MAX_STEPS} \
    --name mtl_split_default --out "runs/d$w" \
    2>&1 | grep --line-buffered -v "it/s\]" > "$logs/train_d$w.log" &
done
wait
best="" best_score=-1
for w in $weights; do
  cp "runs/d$w/train_log.csv" "$logs/train_log_d$w.csv" 2>/dev/null
  score=$(python3 - "$logs/train_d$w.log" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("VAL ")]
s16 = json.loads(lines[-1][4:])["per_split"]["s16"] if lines else None
print(-1 if s16 is None else s16["mAP50"] + s16["mIoU"] + s16["delta1"])
EOF
)
  echo "distill $w: val s16 score $score" | tee -a "$logs/choice.txt"
  if python3 -c "import sys; sys.exit(0 if float('$score') > float('$best_score') else 1)"; then
    best=$w best_score=$score
  fi
done
[ -n "$best" ] && [ -d "runs/d$best/model" ] || exit 1
echo "chosen: distill $best" | tee -a "$logs/choice.txt"
cp "runs/d$best/model/weights.pt" "$OUT/"
for s in s16 s8 s32 input; do
  $cli eval --model "runs/d$best/model" --data $carry/shards_test --split-set test --split $s \
    --codec all --device "$device" --into-card --out "$logs/eval_$s.json" 2>&1 \
    | grep -v "frame/s\]" | tee -a "$logs/eval.log"
done
cp "runs/d$best/model/card.json" "$OUT/"
