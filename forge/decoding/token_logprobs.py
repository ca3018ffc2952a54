"""The teacher's log-probability of each token of sampled completions, through any teacher backend.

RL reads it twice: the `teacher_logprob` reward (the mean over a completion's tokens) and the KL
term pulled toward the teacher (`rl.kl_to=teacher`, in place of the reference model's log-probs).
Both score the same layout as the GKD trainer: a left-padded prompt block [B, P] followed by a
right-padded completion block [B, C], so the distribution of completion token j sits at column
P - 1 + j of the teacher's view.

A dense backend (the in-process `hf` teacher) gives the exact log-probability. A served teacher
gives its top-k view, renormalised over its k ids; a sampled token outside that view has a
probability no larger than the view's smallest, so it is given that smallest log-probability (an
upper bound) and reported in `outside_view` so callers can log how often it happened. A position
the server could not describe at all (llama.cpp after a prefix whose next token is EOS) is left
out of `scored` and given the mean of its row's scored log-probabilities, a neutral value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from forge.decoding.scoring import ScoreRequest, TeacherBackendError, TeacherScorer
from forge.losses.divergence import TopKView


@dataclass
class TokenLogprobs:
    """logprobs: [B, C] the teacher's log-probability of each completion token (0 after the
    completion); scored: [B, C] the completion's tokens the teacher described; outside_view: [B, C]
    scored tokens the teacher's top-k view did not hold (always False for dense teachers);
    unscored: completion tokens the teacher could not describe."""

    logprobs: torch.Tensor
    scored: torch.Tensor
    outside_view: torch.Tensor
    unscored: int = 0

    def sequence_means(self) -> torch.Tensor:
        """[B] mean log-probability over each completion's scored tokens (0 for an empty one)."""
        n = self.scored.sum(-1)
        return (self.logprobs * self.scored).sum(-1) / n.clamp(min=1)


def _padded(rows: Sequence[Sequence[int]], pad: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if left else slice(0, len(row))
            ids[i, span] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, span] = 1
    return ids, mask


def pad_left(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask [B, max len] for lists of token ids (the prompt block)."""
    return _padded(rows, pad, left=True)


def pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask [B, max len] for lists of token ids (the completion block)."""
    return _padded(rows, pad, left=False)


def completion_request(prompt: torch.Tensor, prompt_mask: torch.Tensor, completion: torch.Tensor,
                       completion_mask: torch.Tensor, vision: Any = None) -> ScoreRequest:
    """The sequence [prompt | completion] and the positions predicting a counted completion token
    (with the prompt's `VisionInputs` when it holds a page)."""
    ids = torch.cat([prompt, completion], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1)
    wanted = torch.zeros_like(mask, dtype=torch.bool)
    start = prompt.shape[1] - 1
    wanted[:, start:start + completion.shape[1]] = completion_mask.bool()
    return ScoreRequest(input_ids=ids, attention_mask=mask, positions=wanted, vision=vision)


def completion_logits(scorer: TeacherScorer, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                      completion: torch.Tensor, completion_mask: torch.Tensor, vision: Any = None) -> torch.Tensor:
    """[B, C, V] the teacher's dense logits predicting each completion token."""
    request = completion_request(prompt, prompt_mask, completion, completion_mask, vision=vision)
    start = prompt.shape[1] - 1
    return scorer.logits(request)[:, start:start + completion.shape[1]]


def completion_topk(scorer: TeacherScorer, prompt: torch.Tensor, prompt_mask: torch.Tensor, completion: torch.Tensor,
                    completion_mask: torch.Tensor, k: int, temperature: float = 1.0, vision: Any = None) -> TopKView:
    """[B, C, k] the teacher's top-k view of each completion token (undescribed positions: −inf rows)."""
    request = completion_request(prompt, prompt_mask, completion, completion_mask, vision=vision)
    view = scorer.topk(request, int(k), temperature)
    start, width = prompt.shape[1] - 1, completion.shape[1]
    return view.rows((slice(None), slice(start, start + width)))


@torch.no_grad()
def teacher_token_logprobs(scorer: TeacherScorer, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                           completion: torch.Tensor, completion_mask: torch.Tensor, *,
                           top_k: Optional[int] = None, temperature: float = 1.0, vision: Any = None) -> TokenLogprobs:
    """The teacher's log-probability of every completion token, at `temperature`.

    top_k None reads dense logits (the backend must give them); an int reads the top-k view.
    Raises TeacherBackendError when the backend could describe none of the counted positions.
    """
    counted = completion_mask.bool()
    if top_k is None:
        logits = completion_logits(scorer, prompt, prompt_mask, completion, completion_mask, vision).float()
        logp = torch.log_softmax(logits.to(completion.device) / temperature, dim=-1)
        logp = logp.gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        return TokenLogprobs(logp.masked_fill(~counted, 0.0), counted, torch.zeros_like(counted))
    view = completion_topk(scorer, prompt, prompt_mask, completion, completion_mask, top_k, temperature, vision)
    return _from_view(scorer, completion, counted, view)


def _from_view(scorer: TeacherScorer, completion: torch.Tensor, counted: torch.Tensor, view: TopKView) -> TokenLogprobs:
    """Each sampled token's log-probability in a [B, C, k] view of the completion: exact when the view
    holds it, else the view's smallest (an upper bound); undescribed positions get their row's mean."""
    ids = view.token_ids.to(completion.device)
    lps = view.logprobs.float().to(completion.device)
    described = torch.isfinite(lps).any(-1) & counted
    if counted.any() and not described.any():
        raise TeacherBackendError(f"teacher backend '{getattr(scorer, 'name', '?')}' described none of the "
                                  f"{int(counted.sum())} completion tokens it was asked to score")
    hit = ids == completion.unsqueeze(-1)
    hit &= torch.isfinite(lps)
    in_view = hit.any(-1)
    exact = torch.where(hit, lps, torch.zeros_like(lps)).sum(-1)
    floor = torch.where(torch.isfinite(lps), lps, torch.full_like(lps, float("inf"))).min(-1).values
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    logp = torch.where(in_view, exact, floor)
    row_mean = (logp * described).sum(-1, keepdim=True) / described.sum(-1, keepdim=True).clamp(min=1)
    logp = torch.where(described, logp, row_mean.expand_as(logp))
    return TokenLogprobs(logp.masked_fill(~counted, 0.0), described, described & ~in_view,
                         unscored=int((counted & ~described).sum()))
