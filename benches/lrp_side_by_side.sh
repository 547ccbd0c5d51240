#!/usr/bin/env bash
# `spray explain` and zennit 0.5.1 on the same inputs, in one run: images/s, the ratio, peak RSS
# and spray's start-up (wall time − the explain time it prints: compiling the LRP graph and
# creating the ONNX Runtime session); then spray again with `--cache` (a first call keeps ONNX
# Runtime's optimised graph, the measured second call loads it): its start-up, peak RSS and
# whether its relevance is the uncached run's bit for bit.
#   benches/lrp_side_by_side.sh [N_IMAGES] [MODELS...]      default: 16 resnet50 vgg16
# Needs a Python with benches/requirements-lrp.txt (set PYTHON; default python3). torchvision
# models with random weights (seed 0), exported by torch's legacy exporter, 224×224, batch 8,
# 2 threads each, composites ε-z⁺-♭ and ε-αβ-♭ with zennit's torchvision canonizers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
PYTHON="${PYTHON:-python3}"
n="${1:-16}"; shift || true
models=("$@")
[ $# -eq 0 ] && models=(resnet50 vgg16)
scripts/fetch-onnxruntime.sh >/dev/null
# The dev profile optimises (Cargo.toml) and is the build scripts/demo.sh makes; ONNX Runtime
# does the work either way.
cargo build -q --locked -p spray-cli
spray="$CARGO_TARGET_DIR/debug/spray"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$PYTHON" -c "import numpy as np; r = np.random.default_rng(0); np.save('$work/in.npy', r.uniform(-2, 2, ($n, 3, 224, 224)).astype('float32'))"
printf '| model | composite | spray img/s | zennit img/s | ratio | spray peak RSS | zennit peak RSS | spray start-up | cached: start-up | cached: img/s | cached: peak RSS | cached: same relevance |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for model in "${models[@]}"; do
  "$PYTHON" benches/zennit_lrp_reference.py --model "$model" --export "$work/$model.onnx"
  for composite in epsilon-plus-flat epsilon-alpha2-beta1-flat; do
    measure() {  # extra arguments to spray explain; sets seconds, wall, rss
      out=$(/usr/bin/time -f "wall %e rss %M" "$spray" explain --model "$work/$model.onnx" --input "$work/in.npy" \
        --composite "$composite" --batch-size 8 --threads 2 "$@" 2>&1)
      seconds=$(echo "$out" | grep -o 'in [0-9.]*s (' | tr -dc '0-9.')
      wall=$(echo "$out" | grep -o 'wall [0-9.]*' | tr -dc '0-9.')
      rss=$(echo "$out" | grep -o 'rss [0-9]*' | tr -dc '0-9')
    }
    rm -rf "$work/cache"
    measure --out-relevance "$work/r.npy"
    plain=($seconds $wall $rss)
    measure --out-relevance "$work/r-first.npy" --cache "$work/cache"   # keeps the graph
    measure --out-relevance "$work/r-cached.npy" --cache "$work/cache"
    cached=($seconds $wall $rss)
    same=$(cmp -s "$work/r.npy" "$work/r-cached.npy" && echo yes || echo NO)
    seconds=${plain[0]} wall=${plain[1]} rss=${plain[2]}
    z=$("$PYTHON" benches/zennit_lrp_reference.py --model "$model" --composite "$composite" \
      --input "$work/in.npy" --batch-size 8 --threads 2)
    zrate=$(echo "$z" | grep -o '[0-9.]* images/s' | tr -dc '0-9.')
    zrss=$(echo "$z" | grep -o 'RSS [0-9]*' | tr -dc '0-9')
    "$PYTHON" -c "
s = $n / $seconds
c = $n / ${cached[0]}
print(f'| $model | $composite | {s:.2f} | {$zrate:.2f} | {s / $zrate:.1f}× | {$rss / 1048576:.2f} GB | {$zrss / 1024:.1f} GB | {$wall - $seconds:.1f} s '
      f'| {${cached[1]} - ${cached[0]}:.1f} s | {c:.2f} | {${cached[2]} / 1048576:.2f} GB | $same |')"
  done
done
