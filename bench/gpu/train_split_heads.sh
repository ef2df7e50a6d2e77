#!/usr/bin/env bash
# Issue #27 item 4 on the lent GPU, one call (~6 min of training and scoring on an H100):
# models/default fine-tuned to serve s8 and s32 with a neck and heads of their own per split
# (`mtl-split train --per-split-heads`), so s16 (backbone, s16 bottleneck, neck, heads,
# batch-norm statistics) stays the default's bit for bit; only the new splits' bottlenecks,
# necks and heads train.
# Two recipes side by side (without and with the default as teacher at its own split), each
# scored on the held-out test frames at s16, s8, s32 and image upload with every codec into its
# card. Time: side by side a frozen-backbone run takes ~6-7 s per epoch of the 2,400 frames
# (4.2 s alone, bench/results/train_gpu/results.md), so 32 epochs (2,400 steps, half at s8, half
# at s32) fit BUDGET=300 s with the first epoch's start-up; with the set-up and the scoring the
# call needs ~7-8 of its 10 minutes. The work is bench/gpu/train_every_split.sh's (what it
# expects carried, what comes back; RUNS, EPOCHS, BUDGET, CARRY, DEVICE, MAX_STEPS, WORKERS,
# WHEELS as there).
#   bash bench/gpu/train_split_heads.sh        # on the device machine, OUT set by the tool
#   DEVICE=cpu MAX_STEPS=2 EPOCHS=1 WHEELS= CARRY=/tmp/tiny OUT=/tmp/o WORKERS=0 \
#     bash bench/gpu/train_split_heads.sh      # a dry run of the script on a CPU
export RUNS=${RUNS:-h0:s16,s8,s32:16,8,32:0:2e-3:own h1:s16,s8,s32:16,8,32:1:2e-3:own}
export EPOCHS=${EPOCHS:-32} BUDGET=${BUDGET:-300}
exec bash "$(dirname "$0")/train_every_split.sh"
