#!/usr/bin/env bash
# The main job on the real default assets: fetch and convert DINOv2-S/14 and Fashion-MNIST (cached under
# assets/), build cpeal, check the converted backbone against the original ONNX graph when onnxruntime is
# available, then embed Fashion-MNIST test images and write their features under assets/out/.
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
