"""Per-token log-probabilities of sampled completions, for GRPO: the policy's and the teacher's.

Why not TRL's own: on a CPU (anything without Triton) TRL's fused LM head projects every prompt
and completion position through the vocabulary-sized head and masks the prompt afterwards (about
864 positions for 8 completions of 32 tokens, of which 256 are scored). Here the backbone runs over
the whole sequence but the head only over the completion positions (`logits_to_keep`), and the
log-softmax is taken there alone: the same numbers, a fraction of the head's work, in the forward
and in the backward.

`TeacherReference` stands where TRL keeps its reference model when `rl.kl_to=teacher`: the KL
term then pulls the policy toward the teacher's distribution instead of its own starting point.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Optional

import torch

from forge.decoding.scoring import TeacherScorer
from forge.decoding.token_logprobs import teacher_token_logprobs


def completion_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, *,
                     temperature: float = 1.0, batch_size: Optional[int] = None, compute_entropy: bool = False,
                     autocast: Callable[[], AbstractContextManager] = nullcontext,
                     ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """([B, C] log-probabilities of the last C = logits_to_keep tokens, [B, C] entropies or None).

    Row layout as TRL's: [left-padded prompt | right-padded completion]; the logits predicting the
    completion are the last C + 1 positions but the final one. Logits are divided by `temperature`
    as TRL's are (the distribution the completions were sampled from).
    """
    batch_size = batch_size or input_ids.size(0)
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        ids = input_ids[start:start + batch_size]
        mask = attention_mask[start:start + batch_size]
        with autocast():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=logits_to_keep + 1,
                           use_cache=False).logits[:, :-1]
        logits = logits.float() / temperature
        log_norm = torch.logsumexp(logits, dim=-1)
        targets = ids[:, -logits_to_keep:]
        logps.append(logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_norm)
        if compute_entropy:
            with torch.no_grad():
                log_probs = logits - log_norm.unsqueeze(-1)
                entropies.append(-(log_probs.exp() * log_probs).sum(-1))
    return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None)


class TeacherReference:
    """The teacher as GRPO's reference: its log-probability of each sampled completion token.

    top_k None reads dense logits (in-process teacher); N reads a server's top-N view (see
    `forge.decoding.token_logprobs` for tokens outside it, counted in `outside_view`).
    """

    def __init__(self, backend: TeacherScorer, *, top_k: Optional[int], temperature: float) -> None:
        self.backend = backend
        self.top_k = top_k
        self.temperature = float(temperature)
        self.last_outside_view = 0.0
        self.last_unscored = 0

    @torch.no_grad()
    def logps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
              vision: Any = None) -> torch.Tensor:
        """[B, C] the teacher's log-probabilities of the last C tokens of each row (after page
        prompts: `vision`, their `VisionInputs`)."""
        prompt, completion = input_ids[:, :-logits_to_keep], input_ids[:, -logits_to_keep:]
        prompt_mask, completion_mask = attention_mask[:, :-logits_to_keep], attention_mask[:, -logits_to_keep:]
        scored = teacher_token_logprobs(self.backend, prompt, prompt_mask, completion, completion_mask,
                                        top_k=self.top_k, temperature=self.temperature, vision=vision)
        self.last_outside_view = float(scored.outside_view.sum()) / max(int(scored.scored.sum()), 1)
        self.last_unscored = scored.unscored
        return scored.logprobs.to(input_ids.device)
