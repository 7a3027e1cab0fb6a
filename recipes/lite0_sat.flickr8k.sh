#!/usr/bin/env bash
# Rebuild the default bundle lite0_sat.flickr8k v3.1.0 from the ImageNet encoder and Flickr8k
# (about 3.5 h on a 2-core CPU; see docs/experiments.md for the scores of each step).
#
#   bash recipes/lite0_sat.flickr8k.sh                 # DATA and RUNS below can be overridden:
#   DATA=/data/flickr8k/captions.csv RUNS=runs/default bash recipes/lite0_sat.flickr8k.sh
#
# Every step writes under $RUNS; the finished bundle is $RUNS/lite0_sat.flickr8k (weights/ is
# never touched: copy it there yourself to ship it). A step whose output exists is skipped,
# so a killed recipe resumes from the step it was in (caption-train itself takes --resume).
set -euo pipefail
RUNS=${RUNS:-runs/recipe-default}
. "$(dirname "$0")/common.sh"
E="--eval-no-repeat-ngram-size 2 --eval-length-penalty 1.0"
FT="--finetune-blocks 2 --finetune-lr-scale 0.5"
SCST="--scst-baseline mean --scst-lr 5e-5"

# 1. a cross-entropy decoder on the frozen encoder (10 epochs, the best kept)
train "$RUNS/seed2" --epochs 10 --seed 2 $E
# 2. 3 more cross-entropy epochs, also tuning the encoder's last 2 blocks
train "$RUNS/ft2" --init-from "$RUNS/seed2/bundle" --epochs 3 --lr 1e-4 --lr-min 1e-5 --seed 2 $FT $E
# 3. 8 self-critical epochs, still tuning those blocks; then the two decoding rules (v2.2.0)
train "$RUNS/ft2_scst" --init-from "$RUNS/ft2/bundle" --epochs 0 --scst-epochs 8 $SCST $FT --seed 2 $E
[ -f "$RUNS/ft2_scst/eval-dev.json" ] || caption-eval --weights "$RUNS/ft2_scst/bundle" "${DATA_FLAGS[@]}" --split dev --no-repeat-words 1 \
    --no-dangling-end 1 --record --version 2.2.0 --out "$RUNS/ft2_scst/eval-dev.json"
# 4. 6 more self-critical epochs at 288x288 input (a 9x9 grid), keeping every epoch's weights
train "$RUNS/r288" --init-from "$RUNS/ft2_scst/bundle" --image-size 288 --epochs 0 --scst-epochs 6 $SCST $FT \
    --seed 4 $E --eval-no-repeat-words --eval-no-dangling-end --keep-epochs
# 5. v3.1.0: the uniform average of epochs 4-6, scored on dev and recorded in the bundle
[ -d "$RUNS/lite0_sat.flickr8k" ] || caption-average --base "$RUNS/r288/bundle" --checkpoints "$RUNS"/r288/epoch{4,5,6}.pt "${DATA_FLAGS[@]}" \
    --out "$RUNS/lite0_sat.flickr8k" --version 3.1.0
echo "bundle: $RUNS/lite0_sat.flickr8k"
