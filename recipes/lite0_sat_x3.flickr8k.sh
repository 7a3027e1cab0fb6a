#!/usr/bin/env bash
# Rebuild the 3-decoder ensemble lite0_sat_x3.flickr8k v1.2.0 (frozen ImageNet encoder; about
# 3 h on a 2-core CPU; see docs/experiments.md).
#
#   bash recipes/lite0_sat_x3.flickr8k.sh     # DATA and RUNS can be overridden as in lite0_sat.flickr8k.sh
#
# Writes under $RUNS only; the ensemble is $RUNS/lite0_sat_x3.flickr8k. Finished runs are skipped.
set -euo pipefail
RUNS=${RUNS:-runs/recipe-x3}
. "$(dirname "$0")/common.sh"

# member 1: 15 cross-entropy epochs, then 5 self-critical ones (the old default v1.1.0)
train "$RUNS/flickr8k" --epochs 15 --scst-epochs 5 --scst-baseline mean --scst-lr 5e-5
# members 2 and 3: cross-entropy decoders of other seeds
for s in 1 2; do
  train "$RUNS/seed$s" --epochs 10 --seed $s --eval-no-repeat-ngram-size 2 --eval-length-penalty 1.0
done
[ -d "$RUNS/lite0_sat_x3.flickr8k" ] || caption-ensemble \
    --members "$RUNS/flickr8k/bundle" "$RUNS/seed1/bundle" "$RUNS/seed2/bundle" "${DATA_FLAGS[@]}" \
    --name lite0_sat_x3.flickr8k --out "$RUNS/lite0_sat_x3.flickr8k" --length-penalty 1.0 \
    --no-repeat-ngram-size 2 --half
[ -f "$RUNS/eval-x3-dev.json" ] || caption-eval --weights "$RUNS/lite0_sat_x3.flickr8k" "${DATA_FLAGS[@]}" --split dev --no-repeat-words 1 \
    --no-dangling-end 1 --record --version 1.2.0 --out "$RUNS/eval-x3-dev.json"
echo "bundle: $RUNS/lite0_sat_x3.flickr8k"
