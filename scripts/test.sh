#!/usr/bin/env bash
# The project's test command (README; CI runs it through .ci/run). Everything it needs is in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked
cargo check --locked --benches --examples
