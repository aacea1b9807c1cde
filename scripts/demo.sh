#!/usr/bin/env bash
# The main job on the real default assets: fetch and convert DINOv2-S/14 and Fashion-MNIST (cached under
# assets/), check the converted backbone against the original ONNX graph when onnxruntime is available, then
# run the active-learning experiment of configs/fashion-mnist.toml: random vs entropy vs entropy with the
# calibration loss (the paper's method), 10 rounds, 3 seeds. Resumable: run it again to continue after a stop.
# Results: runs/fashion-mnist/ (summary.md, metrics.csv, curves.svg). Env: CONFIG, OUT, ASSETS_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ASSETS_DIR="${ASSETS_DIR:-$ROOT/assets}"
CONFIG="${CONFIG:-configs/fashion-mnist.toml}"
OUT="${OUT:-runs/$(basename "$CONFIG" .toml)}"

cargo build --release --quiet
CPEAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/cpeal"
export CPEAL ASSETS_DIR
scripts/fetch-assets.sh

if python3 -c 'import onnxruntime, numpy, safetensors' 2>/dev/null; then
    python3 scripts/verify-dinov2-onnx.py --cpeal "$CPEAL" --skip-transformers || echo "demo: ONNX comparison failed" >&2
else
    echo "demo: onnxruntime not installed; skipping the comparison with the original ONNX graph" >&2
fi

# The shipped configs name ../assets; point a copy at another ASSETS_DIR.
if [[ "$(cd "$ASSETS_DIR" && pwd)" != "$ROOT/assets" ]]; then
    local_config="configs/.local-$(basename "$CONFIG")"
    sed "s#\"\.\./assets/#\"$(cd "$ASSETS_DIR" && pwd)/#" "$CONFIG" >"$local_config"
    CONFIG="$local_config"
fi
"$CPEAL" run --config "$CONFIG" --out "$OUT"
cat "$OUT/summary.md"
echo "demo: done; the table above is $OUT/summary.md, the curves $OUT/curves.svg"
