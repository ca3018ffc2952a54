"""Completion texts → the `[B, C]` tensor `TeacherBackend.generate` returns.

Backends that produce text rather than ids (a server's completion, Tesseract's page text) tokenize it
with the student's tokenizer and must then hand back exactly what the in-process backend does: at most
`max_new_tokens` ids per row, EOS after a finished completion when it fits, right-padded with the pad
id. One place keeps that contract for all of them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from forge.teachers.backends.token_strings import encode_text


def first_eos(tokenizer: Any, eos_token_id: Optional[int | Sequence[int]]) -> Optional[int]:
    """The EOS id to append: the caller's (the first of several), else the tokenizer's."""
    if eos_token_id is None:
        return tokenizer.eos_token_id
    if isinstance(eos_token_id, int):
        return eos_token_id
    return int(list(eos_token_id)[0]) if len(eos_token_id) else None


def pad_id(tokenizer: Any, eos: Optional[int]) -> int:
    """The id that fills a row after its completion: the tokenizer's pad, else EOS, else 0."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(eos) if eos is not None else 0


def completion_row(tokenizer: Any, text: str, max_new_tokens: int, eos: Optional[int], *,
                   finished: bool) -> list[int]:
    """`text`'s ids cut to `max_new_tokens`, with EOS appended when the completion `finished` (it was
    not cut by a length limit) and there is room for it."""
    row = encode_text(tokenizer, text)[:max_new_tokens] if text else []
    if finished and eos is not None and len(row) < max_new_tokens:
        row.append(int(eos))
    return row


def right_padded(rows: Sequence[Sequence[int]], pad: int, device: Any = None) -> torch.Tensor:
    """Rows of ids as one [B, max row length] long tensor, right-padded with `pad`."""
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), int(pad), dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            out[b, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return out if device is None else out.to(device)


__all__ = ["completion_row", "first_eos", "pad_id", "right_padded"]
