#!/usr/bin/env bash
# Build lite2_sat.coco_flickr8k v1.0.0 (issue #21; the default bundle since 2026-12-07) from ImageNet
# EfficientNet-Lite2 at its native 260x260 (a 9x9 grid) on Flickr8k + the COCO subset, on a 2-core
# CPU (times per step in docs/experiments.md):
#
#   bash recipes/lite2_sat.coco_flickr8k.sh     # DATA (space-separated files), RUNS and DEVICE can be overridden
#
# Every step writes under $RUNS; a finished step is skipped and a killed one resumes. The bundle is
# $RUNS/lite2_sat.coco_flickr8k (weights/ is never touched).
set -euo pipefail
RUNS=${RUNS:-runs/recipe-lite2}
DATA=${DATA:-../shared/data/flickr8k/captions.csv ../shared/data/coco_subset/captions.csv}
. "$(dirname "$0")/common.sh"
E="--device ${DEVICE:-auto} --eval-no-repeat-ngram-size 2 --eval-length-penalty 1.0 --eval-no-repeat-words --eval-no-dangling-end"

# 1. 7 cross-entropy epochs, the encoder's last 2 blocks tuned from the first step at 0.1x the
#    decoder's learning rate (one vocabulary at --min-freq 3; epochs balanced by the default
#    --balance 0.5; the epoch with the best mean of both devs' CIDEr-D kept). Self-critical epochs
#    after it lowered that mean (docs/experiments.md), so the release is this run's bundle.
train "$RUNS/xe_ft2" --encoder efficientnet_lite2 --name lite2_sat.coco_flickr8k --epochs 7 --seed 2 --min-freq 3 \
    --finetune-blocks 2 --finetune-lr-scale 0.1 $E --keep-epochs
# 2. the release: the selected bundle re-scored from scratch on both devs, its version and model card recorded
B="$RUNS/lite2_sat.coco_flickr8k"
[ -d "$B" ] || cp -r "$RUNS/xe_ft2/bundle" "$B"
[ -f "$RUNS/eval-dev.json" ] || caption-eval --weights "$B" "${DATA_FLAGS[@]}" --split dev --device "${DEVICE:-auto}" \
    --record --version 1.0.0 --attach "$(dirname "$0")/../docs/cards/lite2_sat.coco_flickr8k/MODEL_CARD.md" \
    --recipe recipes/lite2_sat.coco_flickr8k.sh --out "$RUNS/eval-dev.json"
# 3. the caption confidence (issue #23): fitted on half of each dev split, the training photos remembered
[ -e "$RUNS/confidence-report.json" ] || caption-calibrate --weights "$B" "${DATA_FLAGS[@]}" --device "${DEVICE:-cpu}" \
    --cache "$RUNS/confidence.npz" --plot "$RUNS/confidence.png" --attach --out "$RUNS/confidence-report.json"
echo "bundle: $B"
