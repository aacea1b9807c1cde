#!/usr/bin/env bash
# Seconds per adapter training step on the CPU, cpeal (`cpeal bench train`) and PyTorch (+ peft when installed,
# bench/torch_train.py) on the same machine and thread count, one after the other, as a markdown table in
# bench/results/cpu-train-<date>.md (OUT overrides). Without PyTorch only cpeal is timed.
# Env: ARCH (vit-b16), BATCH (32), ITERS (3), THREADS (all cores), OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ARCH="${ARCH:-vit-b16}"
BATCH="${BATCH:-32}"
ITERS="${ITERS:-3}"
THREADS="${THREADS:-$(nproc)}"
OUT="${OUT:-bench/results/cpu-train-$(date -u +%Y-%m-%d).md}"
CPEAL="${CPEAL:-}"
if [ -z "$CPEAL" ]; then
    cargo build --release --quiet
    CPEAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"
fi
ours=$(RAYON_NUM_THREADS="$THREADS" "$CPEAL" bench train --arch "$ARCH" --batch-size "$BATCH" --iters "$ITERS" --json)
theirs="n/a"
if python3 -c 'import torch, transformers' 2>/dev/null; then
    theirs=$(python3 bench/torch_train.py --arch "$ARCH" --batch-size "$BATCH" --iters "$ITERS" --threads "$THREADS")
fi
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[2]).get(sys.argv[1], "n/a"))' "$1" "$2"; }
{
    echo "# Adapter training step on the CPU — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $THREADS threads"
    echo
    echo "| | step (s) | images/s |"
    echo "|---|---|---|"
    echo "| cpeal | $(field step_s "$ours") | $(field images_per_s "$ours") |"
    if [ "$theirs" != "n/a" ]; then
        echo "| PyTorch ($(field lora "$theirs"), torch $(field torch "$theirs")) | $(field step_s "$theirs") | $(field images_per_s "$theirs") |"
    fi
    echo
    echo "$ARCH, batch $BATCH, LoRA r=4 on q, k, v + a 10-class head, CE + calibration loss, SGD with momentum."
    echo '```'
    echo "$ours"
    echo "$theirs"
    echo '```'
} > "$OUT"
cat "$OUT"
