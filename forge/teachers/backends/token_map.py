"""From an aligned OpenAI-style echo back to rows of the student's token ids, position by position.

Why this is its own module: once an echo is parsed (`completions`), matched to our ids and its
pairing of distributions to tokens decided (`echo_alignment`), what remains is to place each
distribution at the view position it describes and to turn its string keys into ids
(`token_strings`). That placement, and the text offsets used to score sequences that are not the
tokenizer's own split of their text, are the only rules kept here.

Position convention (the view's): view position t holds the distribution of token t+1, so an entry
that describes token j lands at view position j − 1.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

from forge.teachers.backends.completions import EchoEntry
from forge.teachers.backends.token_strings import TokenStrings


# ----------------------------------------------------------------------------------------
# Where in the text a position is (for sequences that are not the tokenizer's own split)


def text_end(ids: Sequence[int], t: int, text: str, decode: Callable[[Sequence[int]], str]
             ) -> Optional[int]:
    """Characters of `text` that ids[0..t] cover, or None when their decoding is not a prefix of
    `text` (token t ends inside a character: its partial UTF-8 bytes decode to "�" alone but
    merge with the next token's bytes in the whole text)."""
    prefix = decode(list(ids[: t + 1]))
    return len(prefix) if text.startswith(prefix) else None


def canonical_ends(canon: Sequence[int], text: str, decode: Callable[[Sequence[int]], str],
                   upto: int) -> dict[int, int]:
    """Text offset → the canonical position whose tokens end there (up to offset `upto`)."""
    found: dict[int, int] = {}
    for j in range(len(canon)):
        end = text_end(canon, j, text, decode)
        if end is None:
            continue
        found.setdefault(end, j)
        if end >= upto:
            break
    return found


# ----------------------------------------------------------------------------------------
# Rows of the view


def top_row(top: Mapping[str, float], strings: TokenStrings, paired: Optional[int], k: int,
            requested: int) -> tuple[list[int], list[float]]:
    """The k most likely resolvable (id, logprob) pairs of one top dict, best first.

    Only the `requested` best keys are considered (servers add the echoed token as an extra
    entry when it is outside the top n); unresolvable keys, duplicates and −inf are dropped.
    """
    items = sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:requested]
    out_ids: list[int] = []
    out_lps: list[float] = []
    for key, lp in items:
        if not math.isfinite(lp):
            continue
        token_id = strings.resolve(key, paired)
        if token_id is None or token_id in out_ids:
            continue
        out_ids.append(token_id)
        out_lps.append(lp)
        if len(out_ids) == k:
            break
    return out_ids, out_lps


def echo_rows(entries: Sequence[EchoEntry], positions: Sequence[int], ids: Sequence[int],
              shift: int, strings: TokenStrings, k: int,
              requested: int) -> dict[int, tuple[list[int], list[float]]]:
    """View position → (ids, logprobs) for every position the echo describes.

    Prompt entry for our token p describes token p + shift → view position p + shift − 1. With
    shift 0 the first generated entry describes the token after the prompt (view n − 1); its
    token id is unknown (only its string came back), so only unique strings resolve there.
    """
    n = len(ids)
    rows: dict[int, tuple[list[int], list[float]]] = {}
    for e, entry in enumerate(entries):
        if entry.top is None:
            continue
        if e < len(positions):
            p = positions[e]
            view, paired = p + shift - 1, ids[p]
        elif e == len(positions) and shift == 0:
            view, paired = n - 1, None
        else:
            continue
        if 0 <= view < n:
            rows[view] = top_row(entry.top, strings, paired, k, requested)
    return rows


__all__ = ["canonical_ends", "echo_rows", "text_end", "top_row"]
