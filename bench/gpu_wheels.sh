#!/usr/bin/env bash
# Packs the CuTe DSL (nvidia-cutlass-dsl) for a GPU machine that has no package index, into
# .whl/nvidia-cutlass-dsl-<version>-cp<py>-<flavor>.tar.xz, for bench/gpu_check.sh to unpack there.
#
# Why not the wheels themselves: the toolkit flavor wheel alone (nvidia-cutlass-dsl-libs-cu12) is 92 MB,
# over the 64 MiB a device call may carry with the working tree. Its two shared libraries (the MLIR
# compiler, 192 MB, and the DSL runtime, 44 MB) share most of their code, so one solid xz stream with the
# x86 filter and a dictionary that spans both holds the whole DSL in about 51 MiB. Left out because nothing
# here uses them: the in-kernel event tracer (iket; the DSL imports it only if present), the aarch64/QNX
# link stubs, the C header and the static runtime (both for ahead-of-time export).
#
# Usage (here, where pip reaches PyPI): bash bench/gpu_wheels.sh [PYTHON_VERSION [FLAVOR]]
#   PYTHON_VERSION  the GPU machine's Python, default 3.12;  FLAVOR  cu12 (default) or cu13
#   XZ_PRESET=1 packs fast (larger) for trying the procedure; the default 9e takes ~5 minutes on one core.
# The GPU machine needs beside it what its image already holds: cuda-bindings, cuda-pathfinder, protobuf,
# typing-extensions (the DSL's other requirements).
set -euo pipefail
cd "$(dirname "$0")/.."

PYVER=${1:-3.12}
FLAVOR=${2:-cu12}
VERSION=${CUTLASS_DSL_VERSION:-4.8.1}
PRESET=${XZ_PRESET:-9e}
PYTHON=${PYTHON:-python3}
tag="cp${PYVER/./}"
archive=".whl/nvidia-cutlass-dsl-${VERSION}-${tag}-${FLAVOR}.tar.xz"

work=$(mktemp -d /tmp/gpu-wheels.XXXXXX)
trap 'rm -rf "$work"' EXIT
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
echo "downloading nvidia-cutlass-dsl ${VERSION} (${FLAVOR}) for CPython ${PYVER} into $work"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$work/wheels" \
  "nvidia-cutlass-dsl==$VERSION" "nvidia-cutlass-dsl-libs-base==$VERSION" \
  "nvidia-cutlass-dsl-libs-core==$VERSION" "nvidia-cutlass-dsl-libs-$FLAVOR==$VERSION" \
  2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

mkdir -p "$work/site"
for wheel in "$work"/wheels/*.whl; do
  "$PYTHON" -m zipfile -e "$wheel" "$work/site"
done
dsl="$work/site/nvidia_cutlass_dsl"
rm -rf "$dsl/dsl_packages/iket" "$dsl/$FLAVOR/lib/stubs" "$dsl/$FLAVOR/include" "$dsl/$FLAVOR"/lib/*.a
find "$work/site" -name __pycache__ -prune -exec rm -rf {} +
ir=$(cd "$work/site" && ls nvidia_cutlass_dsl/dsl_packages/cutlass/_mlir/_mlir_libs/_cutlass_ir."$FLAVOR".*.so)
runtime="nvidia_cutlass_dsl/$FLAVOR/lib/libcute_dsl_runtime.so"
test -f "$work/site/$runtime" || { echo "error: $runtime is not in the $FLAVOR wheel" >&2; exit 1; }

# Everything else first, then the two libraries side by side so one dictionary window covers both.
(cd "$work/site" && find . -type f ! -path "./$ir" ! -path "./$runtime" | LC_ALL=C sort > "$work/files")
printf '%s\n' "./$ir" "./$runtime" >> "$work/files"
mkdir -p .whl
echo "packing $(wc -l < "$work/files") files with xz -$PRESET (x86 filter, 256 MiB dictionary)"
tar -C "$work/site" --owner=0 --group=0 --numeric-owner -cf - -T "$work/files" \
  | xz --x86 --lzma2=preset="$PRESET",dict=256MiB -T1 > "$archive.part"
mv "$archive.part" "$archive"
du -b "$archive" | awk '{printf "wrote %s: %.1f MiB\n", $2, $1 / 1048576}'
