#!/usr/bin/env bash
# CPU fp32 images/s of cpeal vs PyTorch (transformers, same batch and thread count) in one run, written as a
# markdown table to bench/results/cpu-forward-<date>.md. PyTorch is optional: without it only cpeal is timed.
# Env: BATCH (8), ITERS (5), THREADS (all cores).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BATCH="${BATCH:-8}"
ITERS="${ITERS:-5}"
THREADS="${THREADS:-$(nproc)}"
cargo build --release --quiet
CPEAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"
OUT="bench/results/cpu-forward-$(date -u +%Y-%m-%d).md"
have_torch=0
python3 -c 'import torch, transformers' 2>/dev/null && have_torch=1

field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

{
    echo "# CPU fp32 forward, batch $BATCH at 224 px, $THREADS threads"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Median of $ITERS runs after one warm-up; random weights. PyTorch: transformers ViTModel / Dinov2Model, torch.inference_mode, eager."
    echo
    echo "| model | cpeal images/s | PyTorch images/s | cpeal / PyTorch |"
    echo "|---|---|---|---|"
    for arch in vit-b16 dinov2-s14; do
        ours=$(RAYON_NUM_THREADS=$THREADS "$CPEAL" bench forward --arch "$arch" --batch-size "$BATCH" --iters "$ITERS" --json | field images_per_s)
        if [[ $have_torch == 1 ]]; then
            theirs=$(python3 bench/cpu_forward.py --arch "$arch" --batch-size "$BATCH" --iters "$ITERS" --threads "$THREADS" 2>/dev/null | field images_per_s)
            ratio=$(python3 -c "print(f'{$ours / $theirs:.2f}x')")
        else
            theirs="(PyTorch not installed)"; ratio="-"
        fi
        echo "| $arch | $ours | $theirs | $ratio |"
    done
} | tee "$OUT"
echo "wrote $OUT" >&2
