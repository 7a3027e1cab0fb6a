# Sourced by the recipes: DATA and RUNS defaults and the resumable training step.
# DATA is one dataset file or several separated by spaces (DATA="a/captions.csv b/captions.csv"):
# every tool gets each as one --data, in "${DATA_FLAGS[@]}".
DATA=${DATA:-../shared/data/flickr8k/captions.csv}
read -r -a DATAS <<< "$DATA"
DATA_FLAGS=()
for d in "${DATAS[@]}"; do DATA_FLAGS+=(--data "$d"); done
mkdir -p "$RUNS"

train() {  # train OUT ARGS...: one caption-train run; skipped once it wrote its bundle, resumed if cut short
  local out=$1; shift
  [ -d "$out/bundle" ] && return
  if [ -f "$out/checkpoint.pt" ]; then caption-train "${DATA_FLAGS[@]}" --out "$out" --resume "$@"
  else caption-train "${DATA_FLAGS[@]}" --out "$out" "$@"; fi
}
