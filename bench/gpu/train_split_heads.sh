#!/usr/bin/env bash
# Issue #27 item 4 on the lent GPU, one call (~6 min on an H100): models/default fine-tuned to
# serve s8 and s32 with a neck and heads of their own per split (`mtl-split train
# --per-split-heads`), so s16 (backbone, s16 bottleneck, neck, heads, batch-norm statistics)
# stays the default's bit for bit; only the new splits' bottlenecks, necks and heads train.
# Two recipes side by side (without and with the default as teacher at its own split), each
# scored on the held-out test frames at s16, s8, s32 and image upload with every codec into its
# card. The work is bench/gpu/train_every_split.sh's (what it expects carried, what comes back;
# RUNS, EPOCHS, BUDGET, CARRY, DEVICE, MAX_STEPS, WHEELS as there).
#   bash bench/gpu/train_split_heads.sh        # on the device machine, OUT set by the tool
#   DEVICE=cpu MAX_STEPS=2 EPOCHS=1 WHEELS= CARRY=/tmp/tiny OUT=/tmp/o WORKERS=0 \
#     bash bench/gpu/train_split_heads.sh      # a dry run of the script on a CPU
export RUNS=${RUNS:-h0:s16,s8,s32:16,8,32:0:2e-3:own h1:s16,s8,s32:16,8,32:1:2e-3:own}
export EPOCHS=${EPOCHS:-40} BUDGET=${BUDGET:-300}
exec bash "$(dirname "$0")/train_every_split.sh"
