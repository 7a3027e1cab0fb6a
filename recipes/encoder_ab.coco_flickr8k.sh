#!/usr/bin/env bash
# Issue #21's encoder A/B on the combined data: a frozen cross-entropy decoder on ImageNet Lite0
# at 288 and one on ImageNet Lite2 at its native 260 (both a 9x9 grid, so the A/B compares the
# encoders, not grid sizes; 288 is the input of today's default), each 10 epochs on Flickr8k +
# the COCO subset (one vocabulary at --min-freq 3, epochs balanced by the default --balance 0.5),
# selected on the mean of the two devs' CIDEr-D; both devs are in each run's metrics.jsonl and bundle.
#
#   bash recipes/encoder_ab.coco_flickr8k.sh          # DATA (space-separated files) and RUNS can be overridden
#   RUNS=runs/ab DEVICE=cuda bash recipes/encoder_ab.coco_flickr8k.sh
#   SIDE_BY_SIDE=1 bash recipes/encoder_ab.coco_flickr8k.sh   # both at once, one thread each (2-core CPU)
#
# Writes under $RUNS only: $RUNS/lite0/bundle and $RUNS/lite2/bundle. Finished runs are skipped,
# a killed one resumes.
set -euo pipefail
RUNS=${RUNS:-runs/recipe-encoder-ab}
DATA=${DATA:-../shared/data/flickr8k/captions.csv ../shared/data/coco_subset/captions.csv}
. "$(dirname "$0")/common.sh"
AB="--epochs 10 --seed 2 --min-freq 3 --device ${DEVICE:-auto} --eval-no-repeat-ngram-size 2 --eval-length-penalty 1.0"

LITE0=(--encoder efficientnet_lite0 --image-size 288 --name lite0_sat.coco_flickr8k)
LITE2=(--encoder efficientnet_lite2 --name lite2_sat.coco_flickr8k)
if [ -n "${SIDE_BY_SIDE:-}" ]; then
  train "$RUNS/lite0" "${LITE0[@]}" $AB --threads 1 --no-progress > "$RUNS/lite0.log" 2>&1 & a=$!
  train "$RUNS/lite2" "${LITE2[@]}" $AB --threads 1 --no-progress > "$RUNS/lite2.log" 2>&1 & b=$!
  wait $a; wait $b  # either failing fails the recipe (see the logs)
else
  train "$RUNS/lite0" "${LITE0[@]}" $AB
  train "$RUNS/lite2" "${LITE2[@]}" $AB
fi
echo "bundles: $RUNS/lite0/bundle $RUNS/lite2/bundle (compare metrics.selection_score and metrics.datasets)"
