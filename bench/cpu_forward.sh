#!/usr/bin/env bash
# CPU fp32 images/s of cpeal vs PyTorch (transformers, same batch and thread count) in one run, written as a
# markdown table to bench/results/cpu-forward-<date>.md (OUT overrides). PyTorch is optional: without it only
# cpeal is timed. Each round times, per model: cpeal, then PyTorch right after it (the pair the ratio is taken
# from), then cpeal without Strassen's level (CPEAL_STRASSEN=off) and with its own GEMM kernel switched off
# (CPEAL_SGEMM=off: the gemm crate, the path CPUs without AVX2/FMA take), noting the load average before each.
# The machine is shared, so rounds are interleaved rather than run back to back per side, and the verdict is the
# median of the rounds' ratios (last lines).
# Env: BATCH (8), ITERS (5), THREADS (all cores), ROUNDS (1), OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BATCH="${BATCH:-8}"
ITERS="${ITERS:-5}"
THREADS="${THREADS:-$(nproc)}"
ROUNDS="${ROUNDS:-1}"
cargo build --release --quiet
CPEAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"
OUT="${OUT:-bench/results/cpu-forward-$(date -u +%Y-%m-%d).md}"
have_torch=0
python3 -c 'import torch, transformers' 2>/dev/null && have_torch=1

field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
# Classical GFLOP per 224-px image: patch embedding, the four linears and the two attention products per layer.
gflop_per_image() {
    case "$1" in
        vit-b16) set -- 196 768 768 3072 ;;    # patches, patch K (3·16·16), hidden, MLP
        dinov2-s14) set -- 256 588 384 1536 ;; # patches, patch K (3·14·14), hidden, MLP
    esac
    python3 -c "p,kp,d,f=$1,$2,$3,$4; t=p+1; print(f'{(2*p*kp*d + 12*(2*t*(4*d*d + 2*d*f) + 4*t*t*d)) / 1e9:.2f}')"
}
load() { cut -d' ' -f1 /proc/loadavg; }
declare -A ratios # per model, the cpeal / PyTorch ratio of each round
cpeal_ips() { RAYON_NUM_THREADS=$THREADS "$@" "$CPEAL" bench forward --arch "$arch" --batch-size "$BATCH" --iters "$ITERS" --json | field images_per_s; }

{
    echo "# CPU fp32 forward, batch $BATCH at 224 px, $THREADS threads"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
    torch_version=$( ((have_torch)) && python3 -c 'import torch; print(torch.__version__)' || echo "not installed")
    echo "Median of $ITERS runs after one warm-up; random weights. PyTorch $torch_version: transformers ViTModel / Dinov2Model, torch.inference_mode, eager."
    echo "Load is the 1-minute load average just before each measurement (the benchmark's own 2 threads raise it)."
    peak=$(RAYON_NUM_THREADS=$THREADS "$CPEAL" bench cpu-peak --json | field gflops)
    echo "f32 FMA peak of the $THREADS threads, measured just before (\`cpeal bench cpu-peak\`): $peak GFLOP/s."
    for arch in vit-b16 dinov2-s14; do
        g=$(gflop_per_image "$arch")
        echo "$arch: $g GFLOP per image, so at most $(python3 -c "print(f'{$peak / $g:.2f}')") images/s with classical arithmetic at that peak."
    done
    echo
    echo "| round | model | cpeal images/s (load) | cpeal, no Strassen (load) | cpeal, gemm crate (load) | PyTorch images/s (load) | cpeal / PyTorch |"
    echo "|---|---|---|---|---|---|---|"
    for round in $(seq 1 "$ROUNDS"); do
        for arch in vit-b16 dinov2-s14; do
            l1=$(load); ours=$(cpeal_ips env)
            if [[ $have_torch == 1 ]]; then
                l3=$(load)
                theirs=$(python3 bench/cpu_forward.py --arch "$arch" --batch-size "$BATCH" --iters "$ITERS" --threads "$THREADS" 2>/dev/null | field images_per_s)
                theirs="$theirs ($l3)"
                ratio=$(python3 -c "print(f'{$ours / ${theirs%% *}:.2f}x')")
            else
                theirs="(PyTorch not installed)"; ratio="-"
            fi
            l4=$(load); classic=$(cpeal_ips env CPEAL_STRASSEN=off)
            l2=$(load); fallback=$(cpeal_ips env CPEAL_SGEMM=off)
            echo "| $round | $arch | $ours ($l1) | $classic ($l4) | $fallback ($l2) | $theirs | $ratio |"
            ratios[$arch]+="${ratio%x} "
        done
    done
    if [[ $have_torch == 1 ]]; then
        echo
        for arch in vit-b16 dinov2-s14; do
            python3 -c "import statistics as s, sys; r = [float(x) for x in sys.argv[2:]]
print(f'{sys.argv[1]}: cpeal / PyTorch median {s.median(r):.2f}x over {len(r)} rounds (min {min(r):.2f}x, max {max(r):.2f}x).')" "$arch" ${ratios[$arch]}
        done
    fi
} | tee "$OUT"
echo "wrote $OUT" >&2
