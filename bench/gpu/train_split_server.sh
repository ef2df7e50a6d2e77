#!/usr/bin/env bash
# Issue #27 item 4 on the lent GPU, one call (~7 min on an H100: ~40 s set-up and start-up,
# BUDGET=270 s of training, ~2 min of scoring): models/default fine-tuned to serve s8 and s32
# with a server half of their own per split (`mtl-split train --per-split-server`): beside its
# own bottleneck, neck and heads, s8 gets trainable copies of the default's backbone stages
# after s8 (stride 16 and 32), so they adapt to its 8-channel bottleneck, and s32 (no stage
# after it) a neck that climbs from stride 32 to 8 in two learned steps. Everything s16 uses
# (the whole backbone, its bottleneck, the shared neck and heads, their batch-norm statistics)
# stays the default's bit for bit (check_TAG.txt says so); the card grows from 6.25 to 12.58 MB
# (the s8 stage copies: 2.9 M parameters).
# One recipe, as bench/gpu/train_split_heads.sh's run h1 (the default as teacher, lr 2e-3) but
# the whole call to it: the s8 steps now also train ~2.9 M backbone weights, so an epoch costs
# about what fine-tuning every weight did (8.9 s, bench/results/train_gpu/results.md) plus the
# teacher: 24 epochs (1,800 steps, half at s8, half at s32) fit BUDGET=270 s if an epoch takes
# <= 11 s; slower, the budget cuts the schedule (the log says at which epoch). Scored on the
# held-out test frames at s16, s8, s32 and image upload with every codec into its card. The work
# is bench/gpu/train_every_split.sh's (what it expects carried, what comes back; RUNS, EPOCHS,
# BUDGET, CARRY, DEVICE, MAX_STEPS, WORKERS, WHEELS as there; HEADS=server).
#   bash bench/gpu/train_split_server.sh        # on the device machine, OUT set by the tool
#   DEVICE=cpu MAX_STEPS=2 EPOCHS=1 WHEELS= CARRY=/tmp/tiny OUT=/tmp/o WORKERS=0 \
#     bash bench/gpu/train_split_server.sh      # a dry run of the script on a CPU
export RUNS=${RUNS:-v1:s16,s8,s32:16,8,32:1:2e-3:server}
export EPOCHS=${EPOCHS:-24} BUDGET=${BUDGET:-270}
exec bash "$(dirname "$0")/train_every_split.sh"
