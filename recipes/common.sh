# Sourced by the recipes: DATA and RUNS defaults and the resumable training step.
DATA=${DATA:-../shared/data/flickr8k/captions.csv}
mkdir -p "$RUNS"

train() {  # train OUT ARGS...: one caption-train run; skipped once it wrote its bundle, resumed if cut short
  local out=$1; shift
  [ -d "$out/bundle" ] && return
  if [ -f "$out/checkpoint.pt" ]; then caption-train --data "$DATA" --out "$out" --resume "$@"
  else caption-train --data "$DATA" --out "$out" "$@"; fi
}
