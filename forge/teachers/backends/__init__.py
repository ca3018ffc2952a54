"""Teacher backends: where the teacher's distribution comes from (`teacher_backend=hf|vllm|openai`).

`base` holds the contract; `hf` runs the teacher in-process; `openai` talks to any
OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) through `/v1/completions`.
Modules are imported lazily by Hydra's `_target_`.
"""

from forge.teachers.backends.base import (
    Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError, TeacherServerError,
)

__all__ = ["Capabilities", "ScoreRequest", "TeacherBackend", "TeacherBackendError", "TeacherServerError"]
