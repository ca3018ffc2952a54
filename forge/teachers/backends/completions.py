"""The `/v1/completions` wire format: the bodies we send and the response shapes we accept.

Why this is its own module: every request the OpenAI-compatible backend makes (scoring by echo,
scoring after a text prefix, generation) is one completion body, and every answer is read
through the same few shape checks. Keeping them apart from the backend's logic leaves one place
that says what a server must send back; a wrong shape is a `MalformedResponse` (retried by
`http.JsonClient`), never a silently empty distribution. What the strings in a well-formed
answer mean is `token_strings`' and `echo_alignment`'s business.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from forge.teachers.backends.http import MalformedResponse


def normalize_base_url(base_url: str) -> str:
    """"http://host:8000" and "http://host:8000/v1" both mean the server's /v1 API (the OpenAI
    client's convention is the latter); any other path is kept as given."""
    url = base_url.rstrip("/")
    if urllib.parse.urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def completion_body(model: Optional[str], prompt: str, *extras: Mapping[str, Any],
                    **fields: Any) -> dict[str, Any]:
    """One request body: the model when one is named (llama.cpp and single-model vLLM servers
    need none), the prompt and `fields`, then each of `extras` on top (configured extra fields
    win over ours)."""
    return _request_body(model, extras, prompt=prompt, **fields)


def _request_body(model: Optional[str], extras: tuple[Mapping[str, Any], ...], **fields: Any) -> dict[str, Any]:
    body = dict({"model": model} if model else {}, **fields)
    for extra in extras:
        body.update(extra)
    return body


@dataclass(frozen=True)
class EchoEntry:
    """One element of choices[0].logprobs: the token's string, its logprob and the top dict
    (both None for the first entry, as OpenAI's API does)."""

    token: str
    logprob: Optional[float]
    top: Optional[dict[str, float]]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(f"{where} is {value!r}, not a number")
    return float(value)


def first_choice(data: Any) -> Mapping[str, Any]:
    """choices[0] of a completion response; MalformedResponse if the shape is wrong."""
    if not isinstance(data, Mapping):
        raise MalformedResponse(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponse("no choices[0] in the response")
    return choices[0]


def parse_completion(data: Any) -> tuple[str, Optional[str]]:
    """(text, finish_reason) of choices[0]; MalformedResponse if the shape is wrong."""
    choice = first_choice(data)
    text = choice.get("text")
    if not isinstance(text, str):
        raise MalformedResponse("choices[0].text is missing or not a string")
    finish = choice.get("finish_reason")
    return text, finish if isinstance(finish, str) else None


def chat_body(model: Optional[str], messages: list, *extras: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """One `/v1/chat/completions` body (`completion_body`'s rules, messages instead of a prompt)."""
    return _request_body(model, extras, messages=messages, **fields)


def parse_chat_completion(data: Any) -> tuple[str, Optional[str]]:
    """(choices[0].message.content, finish_reason); MalformedResponse if the shape is wrong."""
    choice = first_choice(data)
    message = choice.get("message")
    text = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(text, str):
        raise MalformedResponse("choices[0].message.content is missing or not a string")
    finish = choice.get("finish_reason")
    return text, finish if isinstance(finish, str) else None


def parse_echo(data: Any) -> list[EchoEntry]:
    """choices[0].logprobs of a completion response, checked for shape (MalformedResponse
    names what is wrong: a missing key, lists of different lengths, a non-numeric logprob)."""
    logprobs = first_choice(data).get("logprobs")
    if not isinstance(logprobs, Mapping):
        raise MalformedResponse("choices[0].logprobs is missing (does the server support "
                                "logprobs with echo?)")
    columns = {}
    for key in ("tokens", "token_logprobs", "top_logprobs"):
        column = logprobs.get(key)
        if not isinstance(column, list):
            raise MalformedResponse(f"choices[0].logprobs.{key} is missing or not a list")
        columns[key] = column
    lengths = {key: len(column) for key, column in columns.items()}
    if len(set(lengths.values())) != 1:
        raise MalformedResponse(f"choices[0].logprobs lists differ in length: {lengths}")
    entries = []
    for j, (token, logprob, top) in enumerate(zip(columns["tokens"], columns["token_logprobs"],
                                                  columns["top_logprobs"])):
        if not isinstance(token, str):
            raise MalformedResponse(f"tokens[{j}] is {token!r}, not a string")
        lp = None if logprob is None else _number(logprob, f"token_logprobs[{j}]")
        if top is not None:
            if not isinstance(top, Mapping):
                raise MalformedResponse(f"top_logprobs[{j}] is {type(top).__name__}, not a dict")
            top = {str(k): _number(v, f"top_logprobs[{j}][{k!r}]") for k, v in top.items()}
        entries.append(EchoEntry(token, lp, top))
    return entries


def prompt_tokens_counted(data: Any) -> Optional[int]:
    """usage.prompt_tokens of a response, when the server reports it."""
    usage = data.get("usage") if isinstance(data, Mapping) else None
    counted = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
    return counted if isinstance(counted, int) else None


__all__ = [
    "EchoEntry", "chat_body", "completion_body", "parse_chat_completion", "first_choice", "normalize_base_url", "parse_completion",
    "parse_echo", "prompt_tokens_counted",
]
