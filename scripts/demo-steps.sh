#!/usr/bin/env bash
# One round of the paper's method by hand, command by command (what `cpeal run` does for every round, arm and
# seed; the main job is scripts/demo.sh): fetch and convert DINOv2-S/14 and Fashion-MNIST (cached under
# assets/), embed Fashion-MNIST test images (features under assets/out/), pick the first images to label by
# coreset, train LoRA + head on them with cross-entropy alone and with the calibration loss, evaluate each on 200
# test images none of them saw, and pick the next round's images by the calibrated model's entropy with PCB.
# Env: BUDGET (images to select, default 20), EPOCHS (default 10).
# Env: N (images to embed, default 1000), DEVICE (cpu|cuda|auto, default auto), ASSETS_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ASSETS_DIR="${ASSETS_DIR:-$ROOT/assets}"
N="${N:-1000}"
DEVICE="${DEVICE:-auto}"
OUT="$ASSETS_DIR/out"

cargo build --release --quiet
CPEAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"
export CPEAL ASSETS_DIR
scripts/fetch-assets.sh
mkdir -p "$OUT"

"$CPEAL" info --model "$ASSETS_DIR/dinov2-s14"

if python3 -c 'import onnxruntime, numpy, safetensors' 2>/dev/null; then
    python3 scripts/verify-dinov2-onnx.py --cpeal "$CPEAL" --skip-transformers || echo "demo: ONNX comparison failed" >&2
else
    echo "demo: onnxruntime not installed; skipping the comparison with the original ONNX graph" >&2
fi

"$CPEAL" embed --model "$ASSETS_DIR/dinov2-s14" --idx "$ASSETS_DIR/fashion-mnist" --split t10k --limit "$N" \
    --device "$DEVICE" --batch-size 32 --output "$OUT/fashion-mnist-t10k-dinov2.safetensors"
echo "demo: features of $N Fashion-MNIST test images in $OUT/fashion-mnist-t10k-dinov2.safetensors"

# Which images would a labeller see first? k-center greedy over the DINOv2 features, then the classes it covers.
"$CPEAL" select --strategy coreset --features "$OUT/fashion-mnist-t10k-dinov2.safetensors" --budget "${BUDGET:-20}" \
    --seed 0 --out "$OUT/coreset-selection.txt"
# Which classes a selection covers (labels from the embedded file); also writes the picks' labels, one per line,
# to the file given third (what `cpeal select --labels` reads, as a labeller's answers would be).
coverage() { # strategy selection.txt [labels-out.txt]
    python3 - "$OUT/fashion-mnist-t10k-dinov2.safetensors" "$2" "$1" "${3:-/dev/null}" <<'PY'
import array, collections, json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
start, end = json.loads(raw[8:8 + n])["labels"]["data_offsets"]
values = array.array("f")  # little-endian f32, as safetensors stores them
values.frombytes(raw[8 + n + start:8 + n + end])
labels = [int(v) for v in values]
picked = [int(l) for l in open(sys.argv[2])]
open(sys.argv[4], "w").writelines(f"{labels[i]}\n" for i in picked)
names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
counts = collections.Counter(names[labels[i]] for i in picked)
print(f"demo: {sys.argv[3]} picked {len(picked)} images covering {len(counts)}/10 classes: {dict(counts)}")
PY
}
coverage coreset "$OUT/coreset-selection.txt" "$OUT/coreset-labels.txt"

# One round of the paper's method on the picked images ("labelled" from the dataset's labels): LoRA (r = 4,
# α = 4, α/√r) on q, k, v of every block plus a head, trained with cross-entropy alone and with the calibration
# loss (λ annealed to 1), each then evaluated on 200 test images outside the embedded ones.
EVAL_FROM=$((N < 9800 ? N : 9800))
seq "$EVAL_FROM" $((EVAL_FROM + 199)) >"$OUT/eval-rows.txt"
for loss in none uc; do
    "$CPEAL" train --model "$ASSETS_DIR/dinov2-s14" --idx "$ASSETS_DIR/fashion-mnist" --split t10k \
        --indices "$OUT/coreset-selection.txt" --num-labels 10 --epochs "${EPOCHS:-10}" --batch-size 10 --lr 0.002 \
        --rslora --calib-loss "$loss" --seed 0 --out "$OUT/adapter-$loss"
    metrics=$("$CPEAL" eval --model "$ASSETS_DIR/dinov2-s14" --adapter "$OUT/adapter-$loss" \
        --idx "$ASSETS_DIR/fashion-mnist" --split t10k --indices "$OUT/eval-rows.txt" --device "$DEVICE" --batch-size 32)
    echo "demo: trained on the $(wc -l <"$OUT/coreset-selection.txt") picked images with calib-loss=$loss; on 200 unseen test images: $metrics"
done

# The next round, as the paper runs it: the pool scored by the calibrated model (merged into the checkpoint),
# the most uncertain 10% by entropy among the images not yet labelled, and from those PCB's class-balanced picks.
"$CPEAL" merge --model "$ASSETS_DIR/dinov2-s14" --adapter "$OUT/adapter-uc" --out "$OUT/dinov2-s14-uc"
"$CPEAL" embed --model "$OUT/dinov2-s14-uc" --idx "$ASSETS_DIR/fashion-mnist" --split t10k --limit "$N" \
    --device "$DEVICE" --batch-size 32 --output "$OUT/pool-scored-uc.safetensors"
"$CPEAL" select --strategy entropy --logits "$OUT/pool-scored-uc.safetensors" --labeled "$OUT/coreset-selection.txt" \
    --labels "$OUT/coreset-labels.txt" --pcb --candidates 0.1 --budget "${BUDGET:-20}" --out "$OUT/entropy-selection.txt"
coverage "round 2 (entropy + PCB, calibrated model)" "$OUT/entropy-selection.txt"
echo "demo: done; everything is under $OUT"
