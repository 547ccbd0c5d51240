#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library that spray's `ort` dependency expects, from the
# official `onnxruntime` (CPU) or `onnxruntime-gpu` (CUDA) wheel on PyPI, into .ort/ (ignored).
# spray finds it there by itself; nothing needs exporting.
#
#   scripts/fetch-onnxruntime.sh          # CPU build (default)
#   scripts/fetch-onnxruntime.sh gpu      # CUDA build: libonnxruntime + CUDA provider
#
# Idempotent: does nothing when the library is already in place.
set -euo pipefail

# ort 2.0.0-rc.15 targets the ONNX Runtime 1.31 C API; onnxruntime-gpu exists only as 1.31.1.
ORT_VERSION=1.31.1
flavour=${1:-cpu}
case "$flavour" in
  cpu) package=onnxruntime ;;
  gpu) package=onnxruntime-gpu ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.ort/onnxruntime-$ORT_VERSION-$flavour"
lib="$dest/libonnxruntime.so.$ORT_VERSION"
if [ -f "$lib" ]; then
  echo "ONNX Runtime $ORT_VERSION ($flavour) already at $dest"
  exit 0
fi

python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading $package==$ORT_VERSION from PyPI ..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --python-version 3.11 --implementation cp \
  -d "$tmp" "$package==$ORT_VERSION"
wheel=$(ls "$tmp"/*.whl)
mkdir -p "$dest.partial"
# Take only the shared libraries out of the wheel; a partial directory is renamed when complete
# so an interrupted fetch never looks finished.
"$python" - "$wheel" "$dest.partial" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and ".so" in base and base.startswith("libonnxruntime"):
            with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                dst.write(src.read())
PY
rm -rf "$dest"
mv "$dest.partial" "$dest"
ls -1 "$dest"
echo "ONNX Runtime $ORT_VERSION ($flavour) installed at $dest"
