#!/usr/bin/env bash
# Regenerates Sources/Kernels/OpenCL/KernelSources.swift from kernels/*.cl, so that the built binary
# carries its OpenCL sources and runs from any directory. Run it after editing a kernel; the test
# KernelSourcesTests fails while the generated file is stale.
#
# Usage: scripts/embed-kernels.sh   (from anywhere)
set -euo pipefail
export LC_ALL=C

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/Sources/Kernels/OpenCL/KernelSources.swift"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

shopt -s nullglob
files=("$root"/kernels/*.cl)
if [ ${#files[@]} -eq 0 ]; then
  echo "embed-kernels: no kernels/*.cl found under $root" >&2
  exit 1
fi

{
  echo "// GENERATED FILE — DO NOT EDIT. Regenerate with scripts/embed-kernels.sh."
  echo "//"
  echo "// The OpenCL C sources of kernels/*.cl, keyed by file name without the extension. The .cl"
  echo "// files are the source of truth; KernelSourcesTests fails when this file is stale. Public so"
  echo "// that tests (built without @testable) can compare it with the files."
  echo ""
  echo "public enum KernelSources {"
  echo "  public static let all: [String: String] = ["
  # The glob expands in the C locale's sorted order, so the output is deterministic.
  for f in "${files[@]}"; do
    name="$(basename "$f" .cl)"
    # A raw string ends at \"# and interpolates at \\#( for its own number of #s: use one more #
    # than the longest run of # that follows a quote or a backslash in the source.
    longest="$( (grep -o '["\\]#*' "$f" || true) | awk '{ n = length($0) - 1; if (n > m) m = n } END { print m + 0 }')"
    hashes="$(printf '#%.0s' $(seq 1 $((longest + 1))))"
    # Multi-line string: the text between the line after the opening delimiter and the line
    # before the closing one, verbatim (the closing delimiter sits in column 0, so no
    # indentation is stripped).
    echo "    \"$name\": ${hashes}\"\"\""
    cat "$f"
    echo ""
    echo "\"\"\"${hashes},"
  done
  echo "  ]"
  echo "}"
} >"$tmp"

mv "$tmp" "$out"
trap - EXIT
echo "embed-kernels: wrote $out (${#files[@]} programs)"
