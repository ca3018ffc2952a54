"""Sliding-window perplexity of a causal LM on a token stream.

A text longer than the model's window is scored in windows of `window` tokens whose starts advance
by `stride` (stride < window: the windows overlap, and each new token is scored with up to
`window - 1` tokens of context instead of restarting from nothing). Every token is scored at most
once, by the first window that reaches it with some context: the positions a window shares with
the previous one only give context. A token with no context in its window (the text's first; with
stride == window, every window's first) is not scored. perplexity = exp(sum of scored NLLs / number of scored tokens).

Written here rather than taken from a library because the exact bookkeeping matters: the recipe in
the transformers docs masks the overlap with labels = -100 and then averages `loss * trg_len`,
which counts the first window's unscored first token and so is off by one token per text; lm-eval's
rolling windows need its whole harness. The test checks this against a brute-force computation, one
forward pass per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Perplexity:
    """nll: summed negative log-likelihood (nats) of the scored tokens; tokens: how many."""

    nll: float
    tokens: int

    @property
    def value(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")

    def __add__(self, other: "Perplexity") -> "Perplexity":
        """Pool two texts (token-weighted, the way a corpus perplexity is defined)."""
        return Perplexity(self.nll + other.nll, self.tokens + other.tokens)


def windows_fit(window: int, stride: int) -> bool:
    """The one rule for sliding windows: at least 2 tokens wide, advancing by 1 to `window` tokens."""
    return window >= 2 and 1 <= stride <= window


def window_starts(length: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window over `length` tokens."""
    if not windows_fit(window, stride):
        raise ValueError(f"need window >= 2 and 1 <= stride <= window (got window={window}, stride={stride})")
    spans, scored_to = [], 1  # position 0 has no context: never scored
    begin = 0
    while scored_to < length and begin + 1 < length:
        end = min(begin + window, length)
        first = max(scored_to, begin + 1)
        if end > first:
            spans.append((begin, end, first))
            scored_to = end
        begin += stride
    return spans


@torch.no_grad()
def sliding_window_nll(model: torch.nn.Module, ids: Sequence[int], *, window: int, stride: int) -> Perplexity:
    """Summed NLL of every token of `ids` after the first, in overlapping windows (module docstring)."""
    device = next(model.parameters()).device
    tokens = torch.as_tensor(list(ids), dtype=torch.long, device=device)
    nll, count = 0.0, 0
    for begin, end, first in window_starts(len(tokens), window, stride):
        chunk = tokens[begin:end].unsqueeze(0)
        logprobs = torch.log_softmax(model(input_ids=chunk).logits[0].float(), dim=-1)
        # logits at position j predict token j + 1: score targets first..end-1 from positions first-1..end-2
        targets = tokens[first:end]
        picked = logprobs[first - 1 - begin:end - 1 - begin].gather(1, targets.unsqueeze(1))
        nll -= float(picked.sum())
        count += len(targets)
    return Perplexity(nll, count)


def corpus_perplexity(model: torch.nn.Module, texts_ids: Sequence[Sequence[int]], *, window: int,
                      stride: int) -> Perplexity:
    """Token-weighted perplexity over several texts, each scored on its own (no context crosses texts)."""
    total = Perplexity(0.0, 0)
    for ids in texts_ids:
        total = total + sliding_window_nll(model, ids, window=window, stride=stride)
    return total
