#!/usr/bin/env bash
# The Python package: build its wheel from this workspace (maturin, pinned; the dev profile,
# so it reuses the test build's dependencies), install it into a fresh venv beside numpy,
# polars, pandas and pyarrow (pinned), and run tests/python/test_package.py against the
# `spray` binary of the same build. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
tools="$CARGO_TARGET_DIR/python-tools"
if [ ! -x "$tools/bin/maturin" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q -r tests/python/requirements-build.txt
fi
wheels="$CARGO_TARGET_DIR/wheels"
rm -rf "$wheels"
# The interpreter scripts/test.sh configured pyo3 with, when it did (see there).
interpreter=(); [ -n "${PYO3_PYTHON:-}" ] && interpreter=(-i "$PYO3_PYTHON")
"$tools/bin/maturin" build --locked --profile dev -m crates/spray-py/Cargo.toml -o "$wheels" "${interpreter[@]}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q -r tests/python/requirements.txt
"$scratch/venv/bin/pip" install -q "$wheels"/*.whl
cargo build --locked -p spray-cli
SPRAY_REPO=. SPRAY_BIN="$CARGO_TARGET_DIR/debug/spray" "$scratch/venv/bin/python" tests/python/test_package.py
