#!/usr/bin/env bash
# Installs the Debian packages kiln builds with, only those missing. As root it installs them
# (non-interactive); otherwise it lists what is missing and fails.
set -euo pipefail

packages=(cmake g++ make pkg-config libopenblas-dev libopenblas-openmp-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libsentencepiece-dev libcpp-httplib-dev libopenmpi-dev openmpi-bin libxsmm-dev libdnnl-dev)
# (libdnnl-dev: oneDNN, the large CPU GEMMs' library and bench_layers' CPU RNN baseline.)
# --bench: also the PyTorch peer of `make bench`, on OpenBLAS (python3-torch alone pulls the
# reference BLAS, ~20x slower, which would make the comparison meaningless).
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-torch libopenblas0-pthread)
fi
# --fuzz: clang with libFuzzer and the sanitizer runtimes, and clang's OpenMP (make fuzz).
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-14-dev libomp-14-dev)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "kiln: missing Debian packages: ${missing[*]}" >&2
  echo "kiln: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "kiln: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
