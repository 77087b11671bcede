#!/usr/bin/env bash
# Runs every libFuzzer target of a KILN_FUZZ build for SECONDS each (make fuzz): the seeds in
# fuzz/corpus/<target>/ are read, new inputs go to BUILD/fuzz-corpus/<target>/ (the repo's seeds
# stay as committed), a crashing input is saved as BUILD/fuzz-artifacts/<target>-crash-*. Fails,
# after running them all, when any target found something.
#   scripts/fuzz.sh BUILD SECONDS [target...]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: scripts/fuzz.sh BUILD SECONDS [target...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD SECONDS [target...]}
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors corpus config state vocab translate_input)

failed=()
for target in "${targets[@]}"; do
  work="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts"
  mkdir -p "$work" "$artifacts"
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
  echo "== fuzz_$target: ${seconds}s"
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: one that needs 2 GB is a finding.
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$target-" "${dict[@]}" \
      "$work" "fuzz/corpus/$target" 2>"$build/fuzz-$target.log"; then
    tail -60 "$build/fuzz-$target.log"
    failed+=("$target")
  fi
  grep -E "^stat::number_of_executed_units|^Done " "$build/fuzz-$target.log" || true
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "kiln: fuzz findings in: ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "kiln: fuzz: no findings in ${targets[*]}"
