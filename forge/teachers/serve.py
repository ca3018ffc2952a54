"""Serve a packaged GGUF teacher as an OpenAI-compatible server (llama-cpp-python's), for
`teacher_backend=openai` without a GPU or a hosted API.

    python -m forge.teachers.serve --port 8000        # SmolLM2-135M-Instruct on 127.0.0.1:8000

The file is the one `model=smollm2` dequantises for its in-process teacher, checked against the
same sha256, so the server and the student share one tokenizer. The server's pitfalls on CPU
(portable build, one request at a time, echo alignment) are in DESIGN.md §7 and are handled by
`forge.teachers.backends.openai`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from forge.models import packaged


def packaged_gguf(name: str = "SmolLM2-135M-Instruct") -> Path:
    """The verified GGUF file of a packaged gguf model."""
    entry = packaged.get_entry(name)
    if entry.kind != "gguf_llama":
        raise SystemExit(f"packaged model '{name}' is not a GGUF model; GGUF models: "
                         f"{[n for n, e in packaged.REGISTRY.items() if e.kind == 'gguf_llama']}")
    folder = entry.locate()
    packaged.verify_files(folder, entry.files)
    (file_name,) = entry.files
    return folder / file_name


def server_command(gguf: Path, *, host: str, port: int, n_ctx: int = 2048, threads: int = 2) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", host,
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="packaged GGUF model name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("llama-cpp-python is not installed; `bash .ci/install.sh` builds it (about 5 minutes)")
    command = server_command(packaged_gguf(args.model), host=args.host, port=args.port, n_ctx=args.n_ctx,
                             threads=args.threads)
    print(f"forge: serving {args.model} at http://{args.host}:{args.port}/v1", flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
