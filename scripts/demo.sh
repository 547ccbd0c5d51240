#!/usr/bin/env bash
# The bundled demo: fetch ONNX Runtime, build spray, explain the bundled models on their
# bundled inputs with several composites, and show the LRP plan. (The full pipeline demo with
# a dataset and an HTML report arrives with `spray run`, issue #6.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"
scripts/fetch-onnxruntime.sh
cargo build --release --locked -p spray-cli
spray="$CARGO_TARGET_DIR/release/spray"
out=reports/demo
mkdir -p "$out"
fixtures=tests/fixtures/lrp
"$spray" inspect "$fixtures/resnet_small/model.onnx" --composite epsilon-plus-flat
for model in vgg_small resnet_small densenet_small; do
  for composite in epsilon-plus-flat thesis; do
    "$spray" explain --model "$fixtures/$model/model.onnx" --input "$fixtures/$model/input.npy" \
      --composite "$composite" --target argmax \
      --out-relevance "$out/${model}_${composite}_relevance.npy" --out-logits "$out/${model}_logits.npy"
  done
done
echo "relevance maps written to $(pwd)/$out"
