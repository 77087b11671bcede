#!/usr/bin/env bash
# The one command to run on a machine with an NVIDIA GPU: builds kiln with CUDA (or uses a bundle
# made elsewhere by scripts/gpu-bundle.sh), runs every test (CUDA tests must not skip there) and
# the kernel benchmarks, and prints a summary. Logs and JSON go to $OUT (or ./gpu-check-out).
#   scripts/gpu-check.sh                     build here (needs OpenBLAS, GoogleTest, Benchmark)
#   scripts/gpu-check.sh --bundle DIR        use prebuilt binaries from DIR
#   scripts/gpu-check.sh --tests-only        skip the benchmarks
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=""
run_bench=1
# The GPU cases (and the device-copy ceiling); the CPU cases belong to the CPU machine's run.
bench_filter=${BENCH_FILTER:-"cuda:1|CudaCopy|CudnnVsKiln"}
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --tests-only) run_bench=0; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
out=${OUT:-gpu-check-out}
mkdir -p "$out"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || {
  echo "gpu-check: nvidia-smi failed: no usable GPU here" >&2; exit 1; }

if [ -n "$bundle" ]; then
  bin="$bundle/bin"
  # CUDA libraries from this machine: the toolkit, or the pip wheels PyTorch brings.
  cuda_dirs=""
  for lib in libcudart.so.13 libcublas.so.13 libcudnn.so.9; do
    dir=$(find /usr/local/cuda*/lib* /usr/lib/x86_64-linux-gnu /opt /usr/local/lib -name "$lib" -print -quit 2>/dev/null | xargs -r dirname)
    [ -n "$dir" ] && cuda_dirs="$cuda_dirs:$dir"
  done
  export LD_LIBRARY_PATH="$bundle/lib$cuda_dirs:${LD_LIBRARY_PATH:-}"
  echo "== using bundle $bundle (commit $(cat "$bundle/COMMIT" 2>/dev/null || echo ?))"
else
  echo "== building with CUDA"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >"$out/cmake.log" 2>&1 \
    && cmake --build build-gpu -j "$(nproc)" >"$out/build.log" 2>&1 || { tail -40 "$out/build.log" "$out/cmake.log"; exit 1; }
  bin="$out/bin"
  mkdir -p "$bin"
  cp build-gpu/tests/kiln_tests build-gpu/tests/kiln_dist_tests build-gpu/bench/bench_* build-gpu/bench/seq2seq_side build-gpu/examples/* "$bin/" 2>/dev/null
fi

status=0
echo "== tests"
KILN_CLI="$(cd "$bin" && pwd)/kiln" "$bin/kiln_tests" --gtest_brief=1 --gtest_output="json:$out/tests.json" >"$out/tests.log" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$out/tests.log" | head -40
grep -E "Failure|error" "$out/tests.log" | head -40
skipped=$(grep -c "^\[  SKIPPED \] " "$out/tests.log" || true)
echo "skipped tests: $skipped (on a GPU machine only non-differentiable gradchecks should skip)"

echo "== demos on cuda"
"$bin/mlp_demo" cuda 2>&1 | tail -2 || status=1
if [ -x "$bin/kiln" ]; then
  "$bin/kiln" demo --device cuda --out "$out/demo" > "$out/demo.log" 2>&1 || status=1
  grep -E "^epoch (1|12):|held-out:" "$out/demo.log"
  # The same training with each batch shape's step captured in a CUDA graph and replayed.
  "$bin/kiln" train --task reverse --epochs 3 --device cuda --cuda-graph --quiet --out "$out/graph-run" \
    > "$out/graph-run.log" 2>&1 || status=1
  grep -E "^epoch|cuda graph" "$out/graph-run.log"
fi

if [ "$run_bench" = 1 ]; then
  echo "== kernel benchmarks"
  for b in "$bin"/bench_*; do
    name=$(basename "$b")
    [ "$name" = bench_dist ] && continue  # not a Google Benchmark suite: below
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$b" --benchmark_filter="$bench_filter" \
      --benchmark_out="$out/$name.json" --benchmark_out_format=json \
      2>&1 | grep -v "^\*\*\*WARNING" > "$out/$name.txt"
    # A filter that matches none of a binary's cases is not a failure; a case that errs is.
    grep -E "^(BM_|-|Benchmark)" "$out/$name.txt"
    if grep -q "ERROR OCCURRED" "$out/$name.txt"; then status=1; fi
  done
fi

# Data parallelism on the GPU: NCCL through mpirun (one rank per GPU), when this machine has it.
if [ -x "$bin/kiln_dist_tests" ]; then
  echo "== dist"
  gpus=$(nvidia-smi -L | wc -l)
  if command -v mpirun >/dev/null; then
    OMP_NUM_THREADS=2 mpirun --allow-run-as-root --oversubscribe -np "$gpus" "$bin/kiln_dist_tests" \
      > "$out/dist_tests.log" 2>&1 || status=1
    grep -E "^rank 0|PASSED|FAILED" "$out/dist_tests.log" | sort -u
    if [ "$run_bench" = 1 ]; then
      OMP_NUM_THREADS=2 mpirun --allow-run-as-root --oversubscribe -np "$gpus" "$bin/bench_dist" \
        --steps 10 2>&1 | tee "$out/bench_dist.txt" || status=1
    fi
  else
    echo "no mpirun on this machine: NCCL not exercised (world of one only)"
    "$bin/kiln_dist_tests" --gtest_brief=1 > "$out/dist_tests.log" 2>&1 || status=1
    tail -3 "$out/dist_tests.log"
  fi
  # The 8-GPU scaling model (bench/RESULTS.md) from this GPU's measured steps on 64 and 8
  # sentences and NCCL's ring bus bandwidth on 8 NVLink-4 GPUs (~370 GB/s, nccl-tests).
  if [ "$run_bench" = 1 ] && [ -x "$bin/bench_dist" ]; then
    "$bin/bench_dist" --model 8:370 --steps 10 --work small-gru,large-gru,large-lstm 2>&1 |
      grep cuda | tee "$out/bench_dist_model.txt" || status=1
  fi
fi

# kiln vs PyTorch on the GPU (bench/side_by_side.py), when this machine's Python has torch; the
# table goes to $out/side_by_side.txt (copy it into bench/RESULTS.md on the machine you commit on).
python=${PYTHON:-python3}
if [ "$run_bench" = 1 ] && [ -x "$bin/seq2seq_side" ] && "$python" -c "import torch" 2>/dev/null; then
  echo "== kiln vs PyTorch on cuda"
  for precision in f32 bf16; do
    "$python" bench/side_by_side.py --device cuda --side "$bin/seq2seq_side" --python "$python" --no-record \
      --no-kernels --precision "$precision" 2>&1 | tee "$out/side_by_side_$precision.txt" |
      grep -E "ratio|check|MISMATCH|failed|^\|" || status=1
  done
  # The training steps again with kiln's step captured in a CUDA graph (kiln train --cuda-graph).
  "$python" bench/side_by_side.py --device cuda --side "$bin/seq2seq_side" --python "$python" --no-record \
    --no-kernels --cuda-graph --only step 2>&1 | tee "$out/side_by_side_graph.txt" |
    grep -E "ratio|check|MISMATCH|failed|^\|" || status=1
fi

echo "== summary: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
