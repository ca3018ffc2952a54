"""Keep API keys and tokens out of every file a run writes.

Keys come from the environment at run time; a config value whose key looks like a secret is
replaced by a marker before it is written anywhere (config.yaml, run_metadata.json, logs).
"""

from __future__ import annotations

import re
from typing import Any

# Credential-looking config keys. Deliberately not any key containing "token": tokenizer,
# pad_token_id, eos_token and max_new_tokens are ordinary settings.
_SECRET_KEY = re.compile(
    r"(api[_-]?key|(access|auth|hub|hf|bearer|refresh|wandb)[_-]?token|^token$|secret|password|passwd|authorization)",
    re.IGNORECASE,
)
REDACTED = "***redacted***"
# Environment variables that carry credentials: WANDB_API_KEY, HF_TOKEN, OPENAI_API_KEY, ...
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN$|SECRET|PASSW)", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """A key whose value looks like a credential. `*_env` keys (api_key_env: OPENAI_API_KEY) name
    the environment variable a key is read from, which is not itself a secret."""
    key = str(key)
    return bool(_SECRET_KEY.search(key)) and not key.lower().endswith("_env")


def redact(value: Any) -> Any:
    """Return a copy of a plain container with every secret-looking key's value redacted."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """Command-line overrides like `logger.api_key=sk-...` with the value replaced."""
    out = []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        out.append(f"{key}={REDACTED}" if sep and is_secret_key(key.rsplit(".", 1)[-1]) else arg)
    return out


def secret_values_from_env() -> list[str]:
    """Values of environment variables that hold credentials (W&B, hub, OpenAI-style servers)."""
    import os

    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 6]


class RedactingFilter:
    """A logging filter that blanks credential values from the environment out of every record,
    so a library that prints a key or a URL with a token never puts it into output.log."""

    def __init__(self) -> None:
        self.secrets = secret_values_from_env()

    def filter(self, record: Any) -> bool:  # noqa: D102
        if not self.secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True
