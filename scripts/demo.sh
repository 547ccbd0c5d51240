#!/usr/bin/env bash
# The bundled demo end to end: fetch ONNX Runtime, build spray, and run pipelines/demo.toml
# (relevance → analyze → verify → report) on the bundled shapes dataset and CNN. Prints the
# report's path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
scripts/fetch-onnxruntime.sh
# The dev profile compiles dependencies with optimisations (Cargo.toml) and shares its build
# with scripts/test.sh; for overnight runs on real datasets use `cargo build --release`.
cargo build --locked -p spray-cli
"$CARGO_TARGET_DIR/debug/spray" run pipelines/demo.toml "$@"
