#!/usr/bin/env bash
# Fuzzes DiffEqNet's readers of untrusted bytes with libFuzzer: the safetensors reader, the IDX
# and CIFAR readers (raw and gzipped), run settings as JSON, and the series and table CSV readers
# (Fuzz/Sources/Fuzz*).
#
# Usage: scripts/fuzz.sh SECONDS [TARGET…]   (default: every target, SECONDS each)
#
# Each target starts from its committed seeds (Fuzz/Corpus/TARGET) and grows a working corpus in
# .build-fuzz/corpus/TARGET. An input that crashes, hangs (10 s) or trips AddressSanitizer is kept
# as Fuzz/Regressions/TARGET/crash-…, which the tests replay (FuzzRegressionTests); the script
# then fails. The last lines print each target's executions and coverage.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:?usage: scripts/fuzz.sh SECONDS [TARGET…]}"
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzSafeTensors FuzzIDX FuzzCIFAR FuzzSettings FuzzSeriesCSV FuzzTableCSV)

scratch="$root/.build-fuzz"
# -sanitize=fuzzer instruments for libFuzzer and links it; SwiftPM's executables define `main`
# themselves, so libFuzzer's own main is not linked and each target calls LLVMFuzzerRunDriver.
swift build -c release --package-path "$root/Fuzz" --scratch-path "$scratch" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld >&2
bin="$(swift build -c release --package-path "$root/Fuzz" --scratch-path "$scratch" --show-bin-path)"

status=0
for target in "${targets[@]}"; do
  corpus="$scratch/corpus/$target"
  regressions="$root/Fuzz/Regressions/$target"
  mkdir -p "$corpus" "$regressions"
  log="$scratch/$target.log"
  echo "fuzzing $target for $seconds s" >&2
  if ! "$bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$regressions/" -print_final_stats=1 \
    "$corpus" "$root/Fuzz/Corpus/$target" >"$log" 2>&1; then
    echo "$target: FAILED, input kept in $regressions (log: $log)" >&2
    tail -40 "$log" >&2
    status=1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo ?)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || echo 'cov: ?')"
  echo "$target: $runs executions in $seconds s, $cov, corpus $(ls "$corpus" | wc -l) inputs"
done
exit $status
