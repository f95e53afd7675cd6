#!/usr/bin/env bash
# The one-shot GPU check of the decode kernels (issue 23), `make gpu-check`: on a lent GPU machine, in one call,
# bounded to GPU_CHECK_BUDGET_S (default 420 s) however each stage goes:
#   1. unpack the CuTe DSL carried in .whl/ (bench/gpu_wheels.sh makes it) into $GPU_CHECK_SITE (/tmp/site);
#      the machine has no package index, so nothing is downloaded and no venv is built: python3 as found;
#   2. nvidia-smi, and what the machine has (GPU, L2, torch, the DSL, the arch it compiles for);
#   3. the GPU tests: W_O bit-exact for wo_split 1/2/4/8 at K=6144, N=5120, attention and fused MLP within
#      tolerance and bit-identical on repeat, the engine's start-up checks on the CuTe set (and the CPU tests
#      of the same files); a test that skips for want of a GPU on a GPU machine fails this stage;
#   4. the kernel bench with a cold L2 at the issue's sizes (the tiny model's without a GPU): what
#      `gb10-console bench kernels --json` measures, run without the console's packages; its Markdown table
#      for docs/benchmarks.md and W_O against the issue's targets.
# GPU_CHECK_ONLY=wo runs only W_O's tests (and the start-up checks) and W_O's bench rows, for a short device run.
# Each stage runs under timeout(1). Everything lands in $OUT (default runs/gpu-check): gpu-check.log,
# nvidia-smi.txt, env.json, pytest.xml, kernels.json, kernels.md. Exit 0 only when every stage passed.
# Without a GPU it still runs: the GPU tests skip with their reasons and the bench times the CPU paths.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-check}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
ITERS=${GPU_CHECK_ITERS:-50}
GPU_TESTS=(tests/engine/test_cute_wo_gemv.py tests/engine/test_paged_attention.py tests/engine/test_fused_mlp.py
           tests/engine/test_cute_start_up_checks.py)
BENCH_KERNELS=wo,attention,mlp
if [[ ${GPU_CHECK_ONLY:-} == wo ]]; then  # the W_O kernel alone: its GPU tests, the start-up checks, its bench rows
  GPU_TESTS=(tests/engine/test_cute_wo_gemv.py tests/engine/test_wo_staged_order.py tests/engine/test_cute_start_up_checks.py)
  BENCH_KERNELS=wo
elif [[ -n ${GPU_CHECK_ONLY:-} ]]; then
  echo "GPU_CHECK_ONLY=${GPU_CHECK_ONLY}: only 'wo' is known (unset it for every kernel)" >&2
  exit 2
fi
mkdir -p "$OUT"
rm -f "$OUT"/{gpu-check.log,nvidia-smi.txt,env.json,pytest.xml,kernels.json,kernels.md}  # none left from a run before
exec > >(tee "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1
started=$(date +%s)
deadline=$((started + BUDGET_S))
results=()
failed=0

# stage NAME LIMIT_S COMMAND...: run COMMAND under timeout(1) for at most LIMIT_S, never past the deadline.
stage() {
  local name=$1 limit=$2 left rc t0
  shift 2
  left=$((deadline - $(date +%s)))
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    echo "== $name: skipped, the ${BUDGET_S} s budget is spent"
    results+=("$name: not run (budget spent)")
    failed=1
    return 1
  fi
  echo "== $name (at most ${limit} s): $*"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@"
  rc=$?
  local took=$(($(date +%s) - t0))
  case $rc in
    0) results+=("$name: ok (${took} s)") ;;
    124 | 137) results+=("$name: TIMED OUT after ${took} s") ;;
    *) results+=("$name: exit $rc (${took} s)") ;;
  esac
  ((rc != 0)) && failed=1
  return $rc
}

carried=$(shopt -s nullglob; echo .whl/*.tar.xz .whl/*.whl)
export PY SITE
install_dsl() {  # runs under timeout(1) as `bash -c install_dsl`
  local archive wheels
  for archive in $(shopt -s nullglob; echo .whl/*.tar.xz); do
    echo "unpacking $archive ($(du -m "$archive" | cut -f1) MB) into $SITE"
    "$PY" -c 'import sys, tarfile
safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4: no links out, no devices
tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], **safe)' "$archive" "$SITE" || return 1
  done
  wheels=$(shopt -s nullglob; echo .whl/*.whl)
  if [[ -n $wheels ]]; then
    # shellcheck disable=SC2086  # one word per wheel
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $wheels
  fi
}
export -f install_dsl

echo "gpu-check: $(date -u +%FT%TZ) on $(hostname), $("$PY" -V 2>&1) at $(command -v "$PY")," \
  "budget ${BUDGET_S} s, out $OUT"
if [[ -n $carried ]]; then
  mkdir -p "$SITE"
  stage "install the carried CuTe DSL" 90 bash -c install_dsl
  # The DSL's .pth (which adds dsl_packages to sys.path) is read only in site directories, so name it here.
  export PYTHONPATH="$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "nothing carried in .whl/: using the CuTe DSL $PY already has, if any"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi >/dev/null; then
  stage "nvidia-smi" 20 bash -c 'nvidia-smi; nvidia-smi -q -d CLOCK,PERFORMANCE,ECC' >"$OUT/nvidia-smi.txt" 2>&1
  head -n 20 "$OUT/nvidia-smi.txt"
else
  echo "nvidia-smi: not on PATH (no NVIDIA driver here)" | tee "$OUT/nvidia-smi.txt"
fi
# The GPU's arch as the DSL names it (it detects it too, but falls back to sm_100 silently when it cannot).
arch=$(timeout 60 "$PY" -c 'import torch
if torch.cuda.is_available():
    major, minor = torch.cuda.get_device_capability()
    print(f"sm_{major}{minor}" + ("a" if major >= 9 else ""))' 2>/dev/null)
if [[ -n $arch ]]; then
  export CUTE_DSL_ARCH=${CUTE_DSL_ARCH:-$arch}
  sizes=${GPU_CHECK_SIZES:-issue}
else
  sizes=${GPU_CHECK_SIZES:-tiny}  # the CPU paths at the issue's sizes take minutes: time the tiny model's
  echo "no CUDA GPU visible to $PY: the GPU tests will skip, the bench times the CPU paths at --sizes $sizes"
fi
# pytest-xdist, where installed (the GPU machine's image has it), runs the four files side by side.
parallel=()
"$PY" -c 'import xdist' 2>/dev/null && parallel=(-n 4 --dist loadfile)
stage "environment" 60 "$PY" -m bench.gpu_check env --json "$OUT/env.json"

# --noconftest: tests/conftest.py imports the console's packages (starlette, orjson), which the GPU machine lacks;
# these four files need none of its fixtures. The pyproject's pytest-asyncio options are unknown there: not warned.
stage "GPU tests" 240 "$PY" -m pytest --noconftest -p no:cacheprovider -W ignore::pytest.PytestConfigWarning \
  -q --durations=15 "${parallel[@]}" \
  --junitxml="$OUT/pytest.xml" "${GPU_TESTS[@]}"
stage "GPU tests ran (no skips for want of a GPU on a GPU machine)" 30 "$PY" -m bench.gpu_check tests "$OUT/pytest.xml"

stage "kernel bench (cold L2)" 150 "$PY" -m bench.gpu_check bench --sizes "$sizes" --iters "$ITERS" --kernels "$BENCH_KERNELS" \
  --json "$OUT/kernels.json" --markdown "$OUT/kernels.md"

echo
echo "gpu-check summary ($(($(date +%s) - started)) s of ${BUDGET_S}):"
printf '  %s\n' "${results[@]}"
echo "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $failed
