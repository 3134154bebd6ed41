#!/usr/bin/env bash
# The test command: installs the system packages, builds in release mode (the numeric loops are
# generic and far too slow unspecialised), and runs every test on the CPU backend and on OpenCL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# Hugging Face's Python safetensors, which the checkpoint format is cross-checked against (for
# comparison only: nothing in the product runs Python; those tests skip if this fails).
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check safetensors numpy >&2 \
    || echo "pip could not install safetensors: its cross-checks will be skipped" >&2
fi
# The layering (ARCHITECTURE.md) before anything is built: a lower target importing a higher one,
# or library code that prints or reads the environment, fails here.
bash scripts/check-layers.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
# The public API from outside: Examples/NeuralODEFit depends on this checkout by version (which
# SwiftPM refuses if a library target carries unsafeFlags) and must fit its ODE.
bash scripts/build-example.sh
