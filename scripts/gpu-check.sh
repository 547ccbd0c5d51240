#!/usr/bin/env bash
# CPU vs CUDA for the LRP engine: explains the same batch on both devices with a bundled model
# and prints images/s for each and the largest difference of the relevance (relative to its
# largest magnitude). Where no NVIDIA GPU is usable it says so and exits 0 (nothing to compare).
#
#   scripts/gpu-check.sh [MODEL.onnx] [SIZE] [IMAGES]
#       default: tests/fixtures/lrp/resnet18/model.onnx at 224x224, 64 images
# Needs the GPU build of ONNX Runtime (fetched here: scripts/fetch-onnxruntime.sh gpu) and the
# CUDA 13 / cuDNN 9 libraries on the library path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=${1:-tests/fixtures/lrp/resnet18/model.onnx}
size=${2:-224}
images=${3:-64}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spray/target}"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none); nothing to compare"
  exit 0
fi
nvidia-smi -L
scripts/fetch-onnxruntime.sh gpu
cargo build -q --release -p spray-cli
spray="$CARGO_TARGET_DIR/release/spray"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A seeded float32 batch as .npy, written without numpy.
python3 - "$work/x.npy" "$images" "$size" <<'PY'
import random, struct, sys
path, n, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
shape = (n, 3, s, s)
header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (shape,)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
rng = random.Random(7)
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    count = n * 3 * s * s
    chunk = 1 << 16
    for start in range(0, count, chunk):
        k = min(chunk, count - start)
        f.write(struct.pack("<%df" % k, *[rng.uniform(-2, 2) for _ in range(k)]))
PY

for device in cpu cuda; do
  # ORT loads one build per process: the GPU build runs both devices.
  ORT_DYLIB_PATH="$PWD/.ort/onnxruntime-1.31.1-gpu/libonnxruntime.so.1.31.1" \
    "$spray" explain --model "$model" --input "$work/x.npy" --batch-size 16 \
    --device "$device" --out-relevance "$work/r_$device.npy" 2>&1 | tee "$work/$device.log"
done

python3 - "$work/r_cpu.npy" "$work/r_cuda.npy" <<'PY'
import array, sys
def load(p):
    b = open(p, "rb").read()
    hl = int.from_bytes(b[8:10], "little")
    a = array.array("f")
    a.frombytes(b[10 + hl:])
    return a
a, b = load(sys.argv[1]), load(sys.argv[2])
scale = max(abs(v) for v in a) or 1.0
diff = max(abs(x - y) for x, y in zip(a, b))
print(f"max |R_cpu - R_cuda| = {diff:.3e} ({diff / scale:.2e} of max |R|)")
PY
