#!/usr/bin/env bash
# The test command: installs the system packages, builds in release mode (the numeric loops are
# generic and far too slow unspecialised), and runs every test on the CPU backend and on OpenCL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
