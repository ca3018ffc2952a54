"""Keep API keys and tokens out of every file a run writes.

Keys come from the environment at run time; a config value whose key looks like a secret is
replaced by a marker before it is written anywhere (config.yaml, run_metadata.json, logs).
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization)", re.IGNORECASE)
REDACTED = "***redacted***"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def redact(value: Any) -> Any:
    """Return a copy of a plain container with every secret-looking key's value redacted."""
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
