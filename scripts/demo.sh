#!/usr/bin/env bash
# The main job on the real default assets: fetch and convert DINOv2-S/14 and Fashion-MNIST (cached under
# assets/), build cpeal, check the converted backbone against the original ONNX graph when onnxruntime is
# available, embed Fashion-MNIST test images (features under assets/out/), and pick the first images to label.
# Env: BUDGET (images to select, default 20).
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
python3 - "$OUT/fashion-mnist-t10k-dinov2.safetensors" "$OUT/coreset-selection.txt" <<'PY' || true
import collections, sys
from safetensors.numpy import load_file
labels = load_file(sys.argv[1])["labels"].astype(int)
picked = [int(l) for l in open(sys.argv[2])]
names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
counts = collections.Counter(names[labels[i]] for i in picked)
print(f"demo: coreset picked {len(picked)} images covering {len(counts)}/10 classes: {dict(counts)}")
PY
