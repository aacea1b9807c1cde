#!/usr/bin/env bash
# The project's test command (README; CI runs it through .ci/run). Installs the CUDA 13 NVRTC wheels it needs
# (no GPU needed), then: every test with the cuda-emu device compiled in (the model tests again per Hopper
# GEMM and attention candidate, and with the LayerNorms folded into the GEMMs), the NVRTC compile check of every kernel for sm_80 and sm_90 (fails on errors or register
# spills), the kernel selftest on the emulator, and a build of the benchmarks and examples.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cuda-wheels.sh
# The scripts that only run on a lent GPU machine must at least parse here.
for script in scripts/*.sh; do bash -n "$script"; done
cargo test --locked --features cuda-emu
# The tiny whole models once more through each kernel that runs (or may soon run) by default on an H100,
# emulated: the production path end to end, not only the selftest's shapes (attention: the widened ViT with
# heads of 64; the tiny fixtures' heads take the generic kernel). `A=x+B=y` sets both; a per-role GEMM setting
# runs four variants in one model.
for setting in CPEAL_GEMM_SM90={tmaw-n128s3,tma-n128s5,pp-n128s5,ppo-n128s5,coop-n128s4,coop-n256s4,coopmw-n256s4,coopmc-n128s4,ppomc-n128s5} \
    CPEAL_GEMM_SM90=qkv:coopmc-n128s4,proj:coop-n128s4,fc1:ppomc-n128s5,fc2:coopmw-n256s4 CPEAL_ATTENTION={tail16,tail16x4,tail16w,wgmma} \
    CPEAL_LN_FOLD=on CPEAL_LN_FOLD=on+CPEAL_GEMM_SM90={tmaw-n128s3,tma-n128s5,ppo-n128s5}; do
    env ${setting//+/ } cargo test --locked --quiet --features cuda-emu --test gpu_models
done
cargo run --locked --quiet --features cuda-emu -- nvrtc-check --arch sm_80,sm_90
cargo run --locked --quiet --features cuda-emu -- selftest --device cuda-emu
# Built, not run (criterion times them), with the test build's artifacts: a `cargo check` would redo every
# dependency in check mode, minutes on CI.
cargo test --locked --features cuda-emu --benches --examples --no-run
