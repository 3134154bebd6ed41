#!/usr/bin/env bash
# Builds and runs Examples/NeuralODEFit against this checkout as an outside package would depend
# on it: by version from a git URL. SwiftPM refuses such a dependency if a library target uses
# unsafeFlags, so this also keeps those out of Package.swift. The checkout's working tree is copied
# into a temporary repository tagged 0.1.0 (uncommitted changes included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/DiffEqNet"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$tmp/DiffEqNet")
git -C "$tmp/DiffEqNet" init -q
git -C "$tmp/DiffEqNet" add -A
git -C "$tmp/DiffEqNet" -c user.name=ci -c user.email=ci@localhost commit -qm snapshot
git -C "$tmp/DiffEqNet" tag 0.1.0
cd "$root/Examples/NeuralODEFit"
rm -f Package.resolved
DIFFEQNET_URL="file://$tmp/DiffEqNet" swift build -c release --scratch-path "$tmp/build"
"$tmp/build/release/NeuralODEFit"
