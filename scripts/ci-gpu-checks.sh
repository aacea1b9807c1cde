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

source scripts/cuda-wheels.sh

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
