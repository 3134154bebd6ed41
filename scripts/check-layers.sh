#!/usr/bin/env bash
# Checks the library's layering (ARCHITECTURE.md), which the compiler alone does not: SwiftPM lets
# a target import any module already built in the same package, declared dependency or not.
#  1. Each target's declared dependencies (Package.swift) and each source file's imports name only
#     the modules the table below allows: the targets beneath it.
#  2. Nothing below Runner prints, parses flags or reads environment variables.
# Exits non-zero naming every violation. Run by scripts/test.sh before the build.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import json, os, re, subprocess, sys

c_kernels = ["COpenCL", "CBLAS", "COpenBLASCore", "CSIMDSupport", "CWinograd", "CSmallGEMM",
             "CVectorMath"]
# The project's modules each library target may use, bottom up.
allowed = {
    "Kernels": c_kernels,
    "DiffEqCore": ["Kernels"],
    "DiffEqODE": ["DiffEqCore", "Kernels"],
    "DiffEqData": ["DiffEqCore", "Kernels", "CZlib"],
    "DiffEqModels": ["DiffEqODE", "DiffEqCore", "Kernels"],
    "DiffEqTraining": ["DiffEqModels", "DiffEqODE", "DiffEqData", "DiffEqCore", "Kernels"],
    "DiffEqNet": ["DiffEqTraining", "DiffEqModels", "DiffEqODE", "DiffEqData", "DiffEqCore",
                  "Kernels"],
}
package = json.loads(subprocess.run(["swift", "package", "dump-package"], check=True,
                                    capture_output=True, text=True).stdout)
targets = {t["name"]: t for t in package["targets"]}
project_modules = set(targets)
errors = []

for name, modules in allowed.items():
    declared = set()
    for d in targets[name]["dependencies"]:
        for kind in ("byName", "target"):
            if kind in d:
                declared.add(d[kind][0])
    for d in sorted(declared & project_modules - set(modules)):
        errors.append(f"Package.swift: {name} depends on {d}, which is not below it")

import_re = re.compile(r"^\s*(?:@_exported\s+|@testable\s+)?(?:(?:public|package|internal|private|fileprivate)\s+)?import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)")
forbidden = [
    (re.compile(r"(?<![\w.])print\s*\("), "prints (only Runner talks to the terminal)"),
    (re.compile(r"\bProcessInfo\.processInfo\.environment\b|\bgetenv\s*\(|\bsetenv\s*\("),
     "reads the environment (settings are explicit options that Runner sets)"),
    (re.compile(r"\bCommandLine\.arguments\b|\bimport\s+ArgumentParser\b"), "parses flags"),
]
for name, modules in allowed.items():
    root = os.path.join("Sources", name)
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".swift") or f == "KernelSources.swift":
                continue
            path = os.path.join(dirpath, f)
            for n, line in enumerate(open(path, encoding="utf-8"), 1):
                code = line.split("//", 1)[0]
                m = import_re.match(code)
                if m and m.group(1) in project_modules and m.group(1) not in modules:
                    errors.append(f"{path}:{n}: {name} imports {m.group(1)}, which is not below it")
                for pattern, what in forbidden:
                    if pattern.search(code):
                        errors.append(f"{path}:{n}: {what}: {line.strip()}")

if errors:
    print("layering violations:", *errors, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"layers: {len(allowed)} targets import only what is below them")
PY
