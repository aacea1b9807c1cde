#!/usr/bin/env bash
# GPU-kernel checks that need no GPU (CI): real CUDA 13.0 NVRTC compiles every kernel for sm_80 and sm_90 and
# fails on a compile error or a register spill; every kernel runs under the cuda-emu emulator against its
# CPU reference. Installs the two NVRTC wheels once into a cache folder (pip --target; no venv needed).
#
#   scripts/ci-gpu-checks.sh            # release profile (as scripts/test.sh); CPEAL_CI_PROFILE=dev for debug
#
# Environment: CARGO_TARGET_DIR (default target), CPEAL_CUDA_WHEELS (default ~/.cache/cpeal/cuda13-wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

NVRTC_VERSION=13.0.88
RUNTIME_VERSION=13.0.96
WHEELS=${CPEAL_CUDA_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/cpeal/cuda13-wheels}
STAMP="$WHEELS/.cpeal-wheels"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$NVRTC_VERSION $RUNTIME_VERSION" ]]; then
    echo "== installing nvidia-cuda-nvrtc==$NVRTC_VERSION nvidia-cuda-runtime==$RUNTIME_VERSION into $WHEELS"
    rm -rf "$WHEELS"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$WHEELS" \
        "nvidia-cuda-nvrtc==$NVRTC_VERSION" "nvidia-cuda-runtime==$RUNTIME_VERSION"
    echo "$NVRTC_VERSION $RUNTIME_VERSION" >"$STAMP"
fi
LIB="$WHEELS/nvidia/cu13/lib"
test -f "$LIB/libnvrtc.so.13" || { echo "error: $LIB/libnvrtc.so.13 missing after install" >&2; exit 1; }
export CPEAL_NVRTC_LIB="$LIB/libnvrtc.so.13"
export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

PROFILE=${CPEAL_CI_PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")/cpeal"

echo "== build (profile $PROFILE, features cuda-emu)"
cargo build --profile "$PROFILE" --features cuda-emu --bin cpeal

echo "== NVRTC compile check (sm_80, sm_90)"
"$BIN" nvrtc-check --arch sm_80,sm_90

echo "== emulator and checker tests"
cargo test --profile "$PROFILE" --features cuda-emu --test gpu_emu --test nvrtc_check --test gpu_reference

echo "== selftest on the emulator"
"$BIN" selftest --device cuda-emu
echo "== GPU checks passed"
