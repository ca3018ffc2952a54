"""JSON over HTTP with retries, for remote teacher backends (stdlib only).

Why its own module: the retry policy is the part of a remote teacher that decides whether a run
survives a flaky server or trains on garbage. It is small enough to read in one go and is shared
by every request the OpenAI-compatible backend makes (scoring, generation, the tokenizer probe).

Policy:
* retried, with exponential backoff (`backoff_s · 2^attempt`, each retry logged at WARNING with
  its cause): timeouts, refused / reset connections, HTTP 5xx, HTTP 429 (honouring a short
  `Retry-After`), a body that is not JSON, and a JSON payload the caller's parser rejects as
  malformed (`MalformedResponse`: missing keys, lists of the wrong length). All of these can be
  transient (a restarting server, an overloaded proxy, a truncated response).
* not retried: other HTTP 4xx (the request itself is wrong; sending it again cannot help) and any
  `TeacherBackendError` the parser raises (a tokenizer mismatch is deterministic).
* after the last attempt: `TeacherServerError` naming the URL, what was requested, the number of
  attempts and the last cause.

The API key is read from the environment at each request (never stored on the object, so it can
not leak through repr, pickling or `describe()`), sent only as `Authorization: Bearer`, and
scrubbed from every message this module produces.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

from forge.teachers.backends.base import TeacherServerError

log = logging.getLogger(__name__)

T = TypeVar("T")

_BODY_EXCERPT = 300  # characters of an error body worth quoting in a message
_MAX_RETRY_AFTER_S = 30.0


class MalformedResponse(ValueError):
    """A response that parsed as JSON but does not have the expected shape (retried)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. attempts = 1 + max_retries."""

    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): backoff_s · 2^retry."""
        return self.backoff_s * (2 ** retry)


def redact_url(url: str) -> str:
    """The URL without user:password@ or a query string (either may carry a credential)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Retryable(Exception):
    """Internal: one attempt failed in a way worth retrying; `cause` says how."""

    def __init__(self, cause: str, retry_after: Optional[float] = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class JsonClient:
    """POSTs JSON to `base_url + path` and hands the decoded body to a parser, with retries.

    api_key_env: the name of the environment variable holding the key (the key itself is read at
      request time and never kept). Unset or empty: no Authorization header.
    sleep: injectable for tests; defaults to time.sleep.
    """

    def __init__(self, base_url: str, *, api_key_env: Optional[str] = "OPENAI_API_KEY",
                 policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.policy = policy
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"JsonClient({redact_url(self.base_url)!r}, api_key_env={self.api_key_env!r})"

    # -- the secret -----------------------------------------------------------------------

    def _api_key(self) -> Optional[str]:
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def scrub(self, text: str) -> str:
        """`text` with the API key (if any) replaced, so no message can carry it."""
        key = self._api_key()
        return text.replace(key, "***") if key else text

    # -- requests -------------------------------------------------------------------------

    def post(self, path: str, payload: dict[str, Any], *, what: str,
             parse: Callable[[Any], T]) -> T:
        """POST `payload`, parse the JSON body with `parse`, retrying per the policy.

        what: a short description of the request for messages ("top-5 logprobs of a 12-token
          sequence"). parse: raises MalformedResponse for a payload worth asking again,
          TeacherBackendError for one that will never work.
        """
        url = f"{self.base_url}{path}"
        attempts = self.policy.max_retries + 1
        last_cause = "no attempt made"
        for attempt in range(attempts):
            try:
                body = self._send(url, payload, what)
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise _Retryable(f"response is not JSON ({exc}): {_excerpt(body)}") from None
                try:
                    return parse(data)
                except MalformedResponse as exc:
                    raise _Retryable(f"malformed response: {exc}") from None
            except _Retryable as exc:
                last_cause = self.scrub(exc.cause)
                if attempt + 1 == attempts:
                    break
                delay = self.policy.delay(attempt)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, _MAX_RETRY_AFTER_S))
                log.warning("teacher server %s: %s failed (attempt %d/%d: %s); retrying in %.2fs",
                            redact_url(url), what, attempt + 1, attempts, last_cause, delay)
                self._sleep(delay)
        raise TeacherServerError(
            f"teacher server {redact_url(url)}: {what} failed after {attempts} attempt(s) "
            f"(max_retries={self.policy.max_retries}, backoff_s={self.policy.backoff_s}); "
            f"last cause: {last_cause}. Check that the server is up and serving the configured "
            f"model, or raise timeout_s / max_retries."
        )

    def _send(self, url: str, payload: dict[str, Any], what: str) -> str:
        """One attempt: the response body as text, or _Retryable / TeacherServerError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.policy.timeout_s) as response:
                return response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            body = _read_error_body(exc)
            status = exc.code
            if status >= 500 or status == 429:
                raise _Retryable(f"HTTP {status}: {_excerpt(body)}",
                                 retry_after=_retry_after(exc)) from None
            raise TeacherServerError(self.scrub(
                f"teacher server {redact_url(url)}: {what} was rejected with HTTP {status} "
                f"(a client error; not retried): {_excerpt(body)}"
            )) from None
        except (TimeoutError, socket.timeout) as exc:
            raise _Retryable(f"timed out after {self.policy.timeout_s}s ({exc})") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.policy.timeout_s}s ({reason})") from None
            raise _Retryable(f"connection failed: {reason}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            # reset / aborted / truncated mid-response
            raise _Retryable(f"connection failed: {exc!r}") from None


def _read_error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - the body is only decoration for the message
        return ""


def _retry_after(exc: urllib.error.HTTPError) -> Optional[float]:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


__all__ = ["JsonClient", "MalformedResponse", "RetryPolicy", "redact_url"]
