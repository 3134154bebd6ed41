#!/usr/bin/env bash
# Installs the Debian packages DiffEqNet builds and runs against, if any is missing:
# the OpenCL ICD loader and headers, OpenBLAS, zlib (gzip-compressed data sets), and PoCL (OpenCL
# on the CPU, for machines with no GPU).
set -euo pipefail
packages=(ocl-icd-opencl-dev opencl-headers libopenblas-dev zlib1g-dev pocl-opencl-icd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
