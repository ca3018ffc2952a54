"""The teacher's judgement as a reward: how likely the teacher finds each sampled completion.

The mean per-token log-probability (<= 0) rather than the sum, so a long completion is not punished
for its length alone. It goes through any teacher backend with the same layout as the GKD trainer
(`forge.decoding.token_logprobs`): dense logits give the exact value; a served teacher's top-k
view gives the renormalised top-k log-probability, and a token outside the view gets the view's
smallest (an upper bound), logged as `<name>/outside_view` so a run shows how often that happened.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from forge.decoding.token_logprobs import pad_left, pad_right, teacher_token_logprobs
from forge.rewards.base import Reward, RewardContext, RewardError


class TeacherLogprob(Reward):
    """Mean teacher log-probability of each completion's tokens given the prompt the teacher sees
    (`teacher_prompt` under context baking, else the student's `prompts`); 0.0 for an empty one."""

    needs_teacher: ClassVar[bool] = True

    def __init__(self, name: str = "teacher_logprob") -> None:
        super().__init__(name)

    def _teacher_context(self) -> RewardContext:
        context = self.context
        if context is None or context.teacher is None:
            raise RewardError(f"reward '{self.name}' has no teacher: the mode must bind a teacher "
                              "(RewardContext(teacher=...)) before training")
        return context

    def _prompt_rows(self, columns: dict[str, Any], count: int) -> list[list[int]]:
        key = "teacher_prompt" if columns.get("teacher_prompt") is not None else "prompts"
        rows = self._column(columns, key, count)
        out = []
        for i, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Sequence) or not row:
                raise RewardError(f"reward '{self.name}': '{key}' row {i} is {type(row).__name__} of length "
                                  f"{len(row) if hasattr(row, '__len__') else '?'}; it needs a non-empty list "
                                  "of token ids (the tokens the model saw)")
            out.append([int(t) for t in row])
        return out

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        context = self._teacher_context()
        prompts = self._prompt_rows(columns, len(completions))
        completion_ids = [[int(t) for t in row] for row in self._column(columns, "completion_ids", len(completions))]
        if not any(completion_ids):
            return [0.0] * len(completions)
        prompt, prompt_mask = pad_left(prompts, context.pad_token_id)
        completion, completion_mask = pad_right(completion_ids, context.pad_token_id)
        result = teacher_token_logprobs(context.teacher, prompt, prompt_mask, completion, completion_mask,
                                        top_k=context.teacher_top_k, temperature=context.temperature)
        self._log(columns.get("log_metric"), result.scored, result.outside_view, result.unscored)
        return result.sequence_means().tolist()

    def _log(self, log_metric: Any, scored: torch.Tensor, outside: torch.Tensor, unscored: int) -> None:
        if not callable(log_metric):
            return
        log_metric(f"{self.name}/outside_view", float(outside.sum()) / max(int(scored.sum()), 1))
        log_metric(f"{self.name}/unscored", float(unscored))
