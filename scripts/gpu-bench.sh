#!/usr/bin/env bash
# The GPU measurements, in two halves:
#
#   bash scripts/gpu-bench.sh bundle    # here: a self-contained runner in .gpu/ (static Swift
#                                       # stdlib, its shared libraries, an NVIDIA OpenCL vendor
#                                       # file; under 64 MiB), ignored by git
#   bash scripts/gpu-bench.sh run       # on the GPU machine (no Swift there): devices, tune, bench
#                                       # kernels, bench solvers (odeblock, train) and one epoch of
#                                       # runner train, as JSON under $OUT (default ./gpu-out)
#
# With the device tool: carry [".gpu"], command "bash scripts/gpu-bench.sh run", timeout 480.
# The run half finishes in under 7 minutes: each part has its own time limit, and a part that
# fails or runs out of time is recorded (its exit status in status.txt) without stopping the rest.
# DEVICE (default opencl:0) picks the OpenCL device; RUNNER overrides the runner to use (to try
# the run half here on PoCL: RUNNER=.build/release/runner DEVICE=opencl:0 QUICK=1).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bundle() {
  set -e
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  swift build -c release --static-swift-stdlib --product runner --scratch-path .build-gpu >&2
  local bin stage
  bin=$(swift build -c release --static-swift-stdlib --product runner --scratch-path .build-gpu \
    --show-bin-path)
  stage=$(mktemp -d /tmp/gpu-stage.XXXX)/pkg
  mkdir -p "$stage/bin" "$stage/lib" "$stage/icd"
  cp "$bin/runner" "$stage/bin/"
  # Shared libraries a bare image may lack (OpenBLAS, the OpenCL loader, zlib); glibc and
  # libstdc++ stay the machine's own.
  ldd "$stage/bin/runner" | awk '/=> \//{print $1, $3}' | while read -r name path; do
    case "$name" in
      libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread*|libdl.so*|librt.so*) ;;
      *) cp -L "$path" "$stage/lib/$name" ;;
    esac
  done
  strip --strip-unneeded "$stage/bin/runner" "$stage/lib/"* 2>/dev/null || true
  echo "libnvidia-opencl.so.1" > "$stage/icd/nvidia.icd"
  cat > "$stage/env.sh" <<'ENV'
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
extra=""
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
  [ -e "$d/libnvidia-opencl.so.1" ] && extra="$extra:$d"
done
export LD_LIBRARY_PATH="$here/lib$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OCL_ICD_VENDORS="$here/icd"
export PATH="$here/bin:$PATH"
ENV
  rm -rf .gpu && mkdir -p .gpu
  tar -C "$stage" -cJf .gpu/bundle.tar.xz .
  rm -rf "$(dirname "$stage")"
  cat > .gpu/run <<'RUN'
#!/usr/bin/env bash
# Unpacks the bundle once per machine, then runs a command with its libraries and vendor file.
set -e
dest=/tmp/diffeqnet-gpu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$dest/.stamp" ] || [ "$here/bundle.tar.xz" -nt "$dest/.stamp" ]; then
  rm -rf "$dest"; mkdir -p "$dest"; tar -C "$dest" -xJf "$here/bundle.tar.xz"; touch "$dest/.stamp"
fi
source "$dest/env.sh"
exec "$@"
RUN
  chmod +x .gpu/run
  du -sh .gpu >&2
}

run() {
  local out=${OUT:-$root/gpu-out}
  local device=${DEVICE:-opencl:0}
  local runner=(${RUNNER:-.gpu/run runner})
  local epochs_flag=(--epochs 1)
  local limit_flag=()
  [ -n "${QUICK:-}" ] && limit_flag=(--limit 256) && epochs_flag=(--epochs 1)
  mkdir -p "$out"
  : > "$out/status.txt"
  part() {  # part NAME SECONDS FILE command...
    local name=$1 seconds=$2 file=$3
    shift 3
    local start=$SECONDS
    timeout "$seconds" "$@" > "$out/$file" 2> "$out/$name.err"
    echo "$name exit=$? seconds=$((SECONDS - start))" >> "$out/status.txt"
  }
  part devices 30 devices.txt "${runner[@]}" devices
  # The tiling the sweep keeps is used by every part after it (the tuning folder is the run's).
  export DIFFEQNET_OPENCL_TUNING="$out/tuning"
  part tune 60 tune.jsonl "${runner[@]}" tune --device "$device" --json --repetitions 3
  part kernels 80 kernels.jsonl "${runner[@]}" bench kernels --device "$device" --json \
    --repetitions 5
  part odeblock 80 odeblock.jsonl "${runner[@]}" bench solvers --workload odeblock \
    --only rk4_forward,rk4_adjoint,dopri5_adjoint --device "$device" --json --repetitions 3
  part train_step 50 train-step.jsonl "${runner[@]}" bench solvers --workload train \
    --device "$device" --json --repetitions 3
  part train_epoch 100 train.log "${runner[@]}" train --device "$device" "${epochs_flag[@]}" \
    "${limit_flag[@]}" --out "$out/run"
  # The run folder's metrics (a checkpoint is not worth the transfer).
  cp "$out/run/metrics.jsonl" "$out/train-metrics.jsonl" 2>/dev/null
  rm -rf "$out/run"
  cat "$out/status.txt"
}

case "${1:-}" in
  bundle) bundle ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-bench.sh bundle|run" >&2; exit 64 ;;
esac
