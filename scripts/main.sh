#!/usr/bin/env bash
# The main job: installs the system packages, builds `runner` in release mode and trains ODE-Net on
# the bundled MNIST subset (data/mnist-5k) with the default settings, writing runs/latest/.
# Extra arguments go to `runner train` (see `runner train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --product runner
bin=$(swift build -c release --show-bin-path)
"$bin/runner" devices
"$bin/runner" train "$@"
