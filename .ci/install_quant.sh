#!/usr/bin/env bash
# GPTQ / AWQ baselines (model.student.quantization=int4_gptq|int4_awq) run llmcompressor in their own
# environment, ./.venv-quant: llmcompressor 0.14 pins transformers<=5.17 and Forge runs 5.23.
# Forge calls forge/models/llmcompressor_worker.py with this interpreter. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-quant/bin/python ]; then
  "$PYTHON" -m venv .venv-quant
fi
if ! .venv-quant/bin/python -c "import llmcompressor, sys; sys.exit(0 if llmcompressor.__version__ == '0.14.0.1' else 1)" 2>/dev/null; then
  .venv-quant/bin/python -m pip install -q --upgrade pip >/dev/null
  # torch first, the CPU build (as .ci/install.sh); then llmcompressor with its own pins
  .venv-quant/bin/python -m pip install -q torch==2.13.0
  .venv-quant/bin/python -m pip install -q llmcompressor==0.14.0.1
fi
echo "forge: GPTQ/AWQ environment ready in .venv-quant ($(.venv-quant/bin/python -c 'import llmcompressor, transformers; print("llmcompressor", llmcompressor.__version__, "transformers", transformers.__version__)' 2>/dev/null | tail -1))"
