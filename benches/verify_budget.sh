#!/usr/bin/env bash
# The verify stage's budget (#27): its wall time against the relevance stage's, at default
# settings, with one binary for both stages. Per scenario: `spray run` once, a copy of the
# finished run, then ROUNDS rounds of `spray verify --force` on the run and
# `spray relevance --force` on the copy, one after the other (so a machine that slows down
# slows both); prints each stage's median wall time (min–max), the median (min–max) of the
# rounds' verify ÷ relevance, and the images the verify stage scored.
#   benches/verify_budget.sh [-n ROUNDS] DIR ...
# DIR: a scenario folder with pipeline.toml, data/ and model.onnx (tests/scenarios/*, or a
# held-out one written by `tests/scenarios/make_realistic.py --out DIR NAME`).
# Uses $SPRAY, else the release binary (built if missing); outputs go to a temporary folder.
# Run nothing else meanwhile: both stages use every core.
set -euo pipefail
caller=$(pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
rounds=5
if [ "${1:-}" = "-n" ]; then
  rounds=$2
  shift 2
fi
[ $# -gt 0 ] || { sed -n '2,12p' "$0"; exit 2; }
target="${CARGO_TARGET_DIR:-$root/target}"
spray="${SPRAY:-$target/release/spray}"
[ -x "$spray" ] || cargo build -q --release --locked -p spray-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Seconds a command took, wall clock, its output to LOG.
seconds() {
  local log=$1
  shift
  local start end
  start=$(date +%s.%N)
  "$@" >> "$log" 2>&1
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

for src in "$@"; do
  src=$(cd "$caller" && cd "$src" && pwd)
  name=$(basename "$src")
  for copy in run copy; do
    mkdir -p "$work/$name/$copy"
    sed -e "s#^root = \"data\"#root = \"$src/data\"#" \
        -e "s#^path = \"model.onnx\"#path = \"$src/model.onnx\"#" \
        -e "s#^dir = .*#dir = \"$work/$name/$copy/out\"#" \
        "$src/pipeline.toml" > "$work/$name/$copy/pipeline.toml"
  done
  "$spray" run "$work/$name/run/pipeline.toml" --quiet > "$work/$name/run.log" 2>&1
  cp -r "$work/$name/run/out" "$work/$name/copy/out"
  verify=()
  relevance=()
  for _ in $(seq "$rounds"); do
    verify+=("$(seconds "$work/$name/verify.log" "$spray" verify --force "$work/$name/run/pipeline.toml")")
    relevance+=("$(seconds "$work/$name/relevance.log" "$spray" relevance --force "$work/$name/copy/pipeline.toml")")
  done
  scored=$(grep -oE '[0-9]+ images scored \(' "$work/$name/verify.log" | tail -1 | sed 's/ (//' || true)
  python3 - "$name" "${scored:-? images scored}" "${verify[*]}" "${relevance[*]}" <<'EOF'
import statistics, sys
name, scored, v, r = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
v, r = [float(x) for x in v], [float(x) for x in r]
ratios = [a / b for a, b in zip(v, r)]
fmt = lambda xs, f: f"{f(statistics.median(xs))} ({f(min(xs))}–{f(max(xs))})"
s = lambda x: f"{x:.2f} s"
q = lambda x: f"{x:.2f}"
print(f"{name}: verify {fmt(v, s)}, relevance {fmt(r, s)}, verify ÷ relevance {fmt(ratios, q)}; "
      f"{scored}, {len(v)} rounds")
EOF
done
