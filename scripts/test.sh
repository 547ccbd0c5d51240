#!/usr/bin/env bash
# Everything the test suite needs, then the tests. Safe to rerun; used by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
scripts/fetch-onnxruntime.sh
cargo fmt --all -- --check
cargo test --workspace --locked "$@"
