#!/usr/bin/env bash
# kiln used from another project, as a person would: install a kiln build into a temporary
# prefix, then configure, build and run examples/out_of_tree (find_package(kiln), a custom layer
# with its own op, gradcheck, a few training steps) against it. Fails on any failure.
#   scripts/out-of-tree.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
prefix=$(mktemp -d /tmp/kiln-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" > "$prefix.log"
echo "kiln installed into $prefix ($(find "$prefix/include/kiln" -name '*.h' | wc -l) headers, $(ls "$prefix/lib"/*.a | wc -l) libraries)"
rm -f "$prefix.log"
cmake -S examples/out_of_tree -B "$prefix/project" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$prefix/project" -j "$(nproc)"
"$prefix/project/swish_layer"
