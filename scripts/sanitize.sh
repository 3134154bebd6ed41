#!/usr/bin/env bash
# Runs the tests that exercise raw memory and threads under the sanitizers, in debug builds (no
# optimisation hides a read past a buffer): KernelsTests and SolverTests under AddressSanitizer,
# the worker pool and the parallel operations under ThreadSanitizer. Each gets its own scratch
# folder (.build-asan, .build-tsan). Exits non-zero on any report.
#
# Usage: scripts/sanitize.sh [address|thread]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
export DIFFEQNET_REQUIRE="${DIFFEQNET_REQUIRE:-opencl}"
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(address thread)
for kind in "${kinds[@]}"; do
  case "$kind" in
    address)
      filter="KernelsTests|SolverTests"
      scratch=.build-asan
      export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
      ;;
    thread)
      filter="WorkerPoolTests|KernelsTests.CPUWinogradTests|DiffEqNetTests.PoolTests"
      scratch=.build-tsan
      export TSAN_OPTIONS="halt_on_error=1"
      ;;
    *) echo "unknown sanitizer '$kind' (address, thread)" >&2; exit 2 ;;
  esac
  echo "== $kind sanitizer: $filter" >&2
  swift build --build-tests --sanitize="$kind" --scratch-path "$scratch" >&2
  swift test --skip-build --sanitize="$kind" --scratch-path "$scratch" \
    --disable-swift-testing --filter "$filter"
done
