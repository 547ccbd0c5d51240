#!/usr/bin/env bash
# Everything the test suite needs, then the tests. Safe to rerun; used by .ci/run.
#   - ONNX Runtime's shared library (PyPI wheel, pinned) into .ort/
#   - Debian's Chromium and playwright-core (npm, pinned by package-lock.json) for the
#     report's browser test
#   - a venv with maturin (PyPI, pinned) to build the Python package, and a fresh one per run
#     with numpy, polars, pandas and pyarrow (pinned) to test it (scripts/test-python.sh)
#   - Debian's slurm-wlm and munge for the scheduler test (a single-node cluster on localhost,
#     started by the test through scripts/slurm-local.sh; ~25 s to install, ~11 s to run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
scripts/fetch-onnxruntime.sh
scripts/install-browser.sh
scripts/slurm-local.sh install
# The browser and Slurm tests must not skip silently here.
export SPRAY_REQUIRE_BROWSER=1
export SPRAY_REQUIRE_SLURM=1
# pyo3 (crates/spray-py) configured as maturin configures it in scripts/test-python.sh, so the
# wheel's build reuses this build's pyo3 instead of compiling it again (and the next run's
# cargo commands reuse the wheel's).
PYO3_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export PYO3_PYTHON PYTHON_SYS_EXECUTABLE="$PYO3_PYTHON" PYO3_BUILD_EXTENSION_MODULE=1
PYO3_ENVIRONMENT_SIGNATURE="$("$PYO3_PYTHON" -c 'import sys, struct; print(f"cpython-{sys.version_info[0]}.{sys.version_info[1]}-{8 * struct.calcsize(chr(80))}bit")')"
export PYO3_ENVIRONMENT_SIGNATURE
cargo fmt --all -- --check
# Lint and documentation gates (they reuse the test build's dependencies).
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
cargo test --workspace --locked "$@"
# The Python package, built from the same target folder and tested in a fresh venv.
scripts/test-python.sh
