#!/usr/bin/env bash
# Packs a CUDA build made on this machine (no GPU needed) into .gpu-bundle/ for a GPU machine
# that lacks OpenBLAS, GoogleTest or Google Benchmark: the test, benchmark and demo binaries plus
# the host libraries they need that such a machine may not have. CUDA's own libraries (cudart,
# cuBLAS, cuDNN) are taken from the GPU machine. Then, there: scripts/gpu-check.sh --bundle .gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=.gpu-bundle
make build BUILD="$build" >/dev/null
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
for exe in "$build"/tests/kiln_tests "$build"/tests/kiln_dist_tests "$build"/bench/bench_* "$build"/bench/seq2seq_side "$build"/examples/*; do
  [ -f "$exe" ] && [ -x "$exe" ] && cp "$exe" "$out/bin/"
done
# Host libraries outside glibc / libstdc++ / CUDA: copied with symlinks resolved.
for exe in "$out"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r name path; do
  case "$name" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) ;;
    libcu*|libnv*) ;;
    *) cp -L "$path" "$out/lib/$name" ;;
  esac
done
strip --strip-unneeded "$out"/bin/* "$out"/lib/* 2>/dev/null || true
git rev-parse --short HEAD > "$out/COMMIT" 2>/dev/null || true
du -sh "$out"
# The device tool carries at most 64 MiB: ship it compressed (tar xf .gpu-bundle.tar.xz there).
tar cJf .gpu-bundle.tar.xz .gpu-bundle
du -sh .gpu-bundle.tar.xz
