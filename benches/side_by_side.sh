#!/usr/bin/env bash
# spray's analyze bench and CoRelAy 1.0 on the same data file, in one run, with the ratio.
#   benches/side_by_side.sh 1300 10000 ...      (pip install -r benches/requirements-corelay.txt)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
cargo bench -q -p spray-analyze --bench analyze_scaling --no-run >/dev/null 2>&1
bench=$(ls -t "$CARGO_TARGET_DIR"/release/deps/analyze_scaling-* | grep -v '\.d$' | head -1)
for n in "$@"; do
  data=$(mktemp --suffix=.f32)
  "$bench" --n "$n" --write-data "$data" >/dev/null
  s=$("$bench" --n "$n" 2>/dev/null)
  echo "$s"
  c=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benches/corelay_reference.py --n "$n" --data "$data")
  echo "$c"
  st=$(echo "$s" | grep -o 'total [0-9.]*s' | head -1 | tr -dc '0-9.')
  ct=$(echo "$c" | grep -o 'total [0-9.]*s' | head -1 | tr -dc '0-9.')
  python3 -c "print(f'n = $n: spray {float($st):.2f} s, CoRelAy {float($ct):.2f} s, spray {float($ct)/float($st):.1f}x faster')"
  rm -f "$data"
done
