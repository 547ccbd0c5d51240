#!/usr/bin/env bash
# The detection scenario suite (tests/scenarios): every scenario through `spray run` and
# `spray evaluate`, under the default ranking and, side by side, the former default
# (rank_by = "lambda2"). Prints per scenario the rank and best-cluster ARI of every shortcut
# class, the AUROC of the ranking and the false alarms.
#   benches/detection.sh [scenario ...]          (default: all of tests/scenarios/*/)
# Uses target/debug/spray (or $SPRAY); outputs go to a temporary folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
spray="${SPRAY:-$root/target/debug/spray}"
[ -x "$spray" ] || cargo build -q --workspace --bin spray
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ $# -eq 0 ]; then
  set -- $(ls -d tests/scenarios/*/ | xargs -n1 basename)
fi
for name in "$@"; do
  src="$root/tests/scenarios/$name"
  for criterion in default lambda2; do
    dir="$work/$name-$criterion"
    mkdir -p "$dir"
    sed -e "s#^root = \"data\"#root = \"$src/data\"#" \
        -e "s#^path = \"model.onnx\"#path = \"$src/model.onnx\"#" \
        -e "s#^dir = .*#dir = \"$dir/out\"#" "$src/pipeline.toml" > "$dir/pipeline.toml"
    if [ "$criterion" != default ]; then
      sed -i "s#^\[analysis\]#[analysis]\nrank_by = \"$criterion\"#" "$dir/pipeline.toml"
    fi
    start=$(date +%s.%N)
    "$spray" run "$dir/pipeline.toml" --quiet > "$dir/run.log"
    took=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    echo "## $name, rank_by = $criterion (spray run: ${took} s)"
    "$spray" evaluate "$dir/pipeline.toml" --truth "$src/truth.json" --json "$dir/detection.json"
    grep -E '^(analyze|verify)' "$dir/run.log" | sed 's/^/  /'
  done
done
