#!/usr/bin/env bash
# Bytecode for everything installed and for the project, once per setup (the tests' many processes
# import vLLM, torch and Ray over and over; with PYTHONDONTWRITEBYTECODE set, as on CI machines, each
# would compile its imports from source: 10 s of CPU per `import vllm`, twice per engine). About 2 min
# on 2 cores; a second run with nothing changed returns at once. Kept out of setup so that
# `make quickstart` does not wait for it: its processes write the bytecode of what they import.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.bytecode-stamp
want=$(cat "$VENV/.setup-stamp")
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
t0=$SECONDS
echo "bytecode: compiling site-packages, lorafleet, tests and benchmarks"
$VENV/bin/python -m compileall -q -j 0 "$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" lorafleet tests benchmarks >/dev/null 2>&1 || true
echo "$want" > "$STAMP"
echo "bytecode: done in $((SECONDS - t0)) s"
