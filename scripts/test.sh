#!/usr/bin/env bash
# Everything the test suite needs, then the tests. Safe to rerun; used by .ci/run.
#   - ONNX Runtime's shared library (PyPI wheel, pinned) into .ort/
#   - Debian's Chromium and playwright-core (npm, pinned by package-lock.json) for the
#     report's browser test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
scripts/fetch-onnxruntime.sh
scripts/install-browser.sh
# The browser test must not skip silently here.
export SPRAY_REQUIRE_BROWSER=1
cargo fmt --all -- --check
cargo test --workspace --locked "$@"
