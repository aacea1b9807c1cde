#!/usr/bin/env bash
# The project's test command (README; CI runs it through .ci/run). Installs the CUDA 13 NVRTC wheels it needs
# (no GPU needed), then: every test with the cuda-emu device compiled in, the NVRTC compile check of every
# kernel for sm_80 and sm_90 (fails on errors or register spills), the kernel selftest on the emulator, and a
# type check of the benchmarks and examples.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-wheels.sh
cargo test --locked --features cuda-emu
cargo run --locked --quiet --features cuda-emu -- nvrtc-check --arch sm_80,sm_90
cargo run --locked --quiet --features cuda-emu -- selftest --device cuda-emu
cargo check --locked --features cuda-emu --benches --examples
