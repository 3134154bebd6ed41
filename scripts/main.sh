#!/usr/bin/env bash
# The main job: installs the system packages, builds `runner`, lists devices and runs the kernel
# benchmark (the training command takes its place once models land).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product runner
bin=$(swift build -c release --show-bin-path)
"$bin/runner" devices
"$bin/runner" bench kernels "$@"
