"""Serve a teacher as an OpenAI-compatible server on this machine, without a GPU or a hosted API.

    python -m forge.teachers.serve --port 8000        # SmolLM2-135M-Instruct on 127.0.0.1:8000
    python -m forge.teachers.serve --vlm tiny-qwen3vl-teacher --port 8001    # page teacher (chat + images)
    python -m forge.teachers.serve --vlm outputs/.../final --port 8001        # a trained VLM run's model

Text teachers: a packaged GGUF model behind llama-cpp-python's server, for `teacher_backend=openai`.
Vision-language teachers (`--vlm`: a packaged VLM's name or a model folder) are served by
`transformers serve` (`/v1/chat/completions` with `image_url` parts, the API vLLM gives a GPU
teacher), for `teacher_backend=vlm_server`.

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


def vlm_folder(name_or_path: str) -> Path:
    """A vision-language model's folder: an existing folder as given, else a packaged model's."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return folder.resolve()
    if name_or_path not in packaged.known_names():
        raise SystemExit(f"--vlm {name_or_path!r} is neither a model folder nor a packaged model; packaged: "
                         f"{packaged.known_names()}")
    return packaged.resolve_packaged_dir(name_or_path)


def vlm_server_command(folder: Path, *, host: str, port: int) -> list[str]:
    """`transformers serve` pinned to one local model (requests need no model name), on the CPU, in a
    process where `AutoProcessor` knows Forge's torchvision-free `PageProcessor` (else the server
    loads the bare tokenizer and serves the model as text-only, dropping every image)."""
    launcher = ("import sys; from forge.models.vision_processor import register_with_auto_processor; "
                "register_with_auto_processor(); from transformers.cli.transformers import main; sys.exit(main())")
    return [sys.executable, "-c", launcher, "serve", str(folder), "--host", host, "--port", str(port), "--device", "cpu", "--dtype", "float32"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="packaged GGUF model name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vlm", default=None, help="serve this vision-language model instead (a packaged "
                        "name such as tiny-qwen3vl-teacher, or a model folder such as a run's final/)")
    args = parser.parse_args(argv)
    if args.vlm is not None:
        from transformers.utils.import_utils import is_serve_available

        if not is_serve_available():
            raise SystemExit("`transformers serve` needs fastapi, uvicorn, pydantic and openai; `bash .ci/install.sh` "
                             "installs them")
        command = vlm_server_command(vlm_folder(args.vlm), host=args.host, port=args.port)
        print(f"forge: serving {args.vlm} (chat completions with images) at http://{args.host}:{args.port}/v1",
              flush=True)
        os.execv(command[0], command)
    if importlib.util.find_spec("llama_cpp") is None:
        raise SystemExit("llama-cpp-python is not installed; `bash .ci/install.sh` builds it (about 5 minutes)")
    command = server_command(packaged_gguf(args.model), host=args.host, port=args.port, n_ctx=args.n_ctx,
                             threads=args.threads)
    print(f"forge: serving {args.model} at http://{args.host}:{args.port}/v1", flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
