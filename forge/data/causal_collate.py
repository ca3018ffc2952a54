"""Batch collation for prompt → completion examples of decoder-only (causal) LMs.

A prepared example stores its prompt and its completion (target + EOS) as separate token lists, so
one collator can lay them out for every consumer at once:

* the SFT / KD loss wants one right-padded sequence `prompt + completion` whose `labels` are -100 on
  the prompt and on padding, so the loss is taken on the completion only (prompt masking);
* generation (eval, on-policy GKD) wants the prompt alone, LEFT-padded, so every row's new tokens
  start at the same column;
* GKD wants the completion alone, right-padded, to append after a (teacher or student) prompt block;
* context baking wants the teacher's prompt (which holds a context the student never sees),
  LEFT-padded, for the same reason as the student's prompt.

Key names follow `forge.data.base.TaskDataHandler`'s docstring. Padding is dynamic (to the longest
row of the batch) and explicit (left or right by key), whatever `tokenizer.padding_side` says.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

#: label value the loss ignores (torch.nn.CrossEntropyLoss's default ignore_index).
IGNORE_INDEX = -100

PROMPT = "prompt_input_ids"
COMPLETION = "completion_input_ids"
TEACHER_PROMPT = "teacher_prompt_input_ids"
#: raw target text column; the eval collator returns it as `references`.
TARGET_TEXT = "target"


def pad_token_id_for(tokenizer: Any) -> int:
    """The tokenizer's pad id, or its EOS id when it has no pad token (common for LMs).

    Padding positions are masked out of attention and labels, so which id fills them does not
    change the loss; it only has to be a valid embedding row.
    """
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    if pad is None:
        raise ValueError(
            "the tokenizer has neither a pad token nor an EOS token; a causal-LM task needs one of "
            "them to pad batches (set tokenizer.pad_token)"
        )
    return int(pad)


def pad_sequences(
    sequences: Sequence[Sequence[int]], value: int, side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(padded ids, attention mask), both (batch, longest) long tensors; side is "left" or "right"."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    width = max((len(seq) for seq in sequences), default=0)
    ids = torch.full((len(sequences), width), value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask



def teacher_prompt(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's left-padded prompt in a collated batch: its own (context baking) or the student's."""
    if TEACHER_PROMPT in batch:
        return batch[TEACHER_PROMPT], batch["teacher_prompt_attention_mask"]
    return batch[PROMPT], batch["prompt_attention_mask"]

class CausalLMCollator:
    """List of prepared examples -> the training batch of a prompt → completion task.

    Each feature needs `prompt_input_ids` and `completion_input_ids` (lists of ids); with
    `teacher_prompt_input_ids` in every feature the batch also carries the teacher's prompt.
    Returns only tensors (the HF Trainer moves every value of a batch to the device):

      input_ids, attention_mask, labels              prompt + completion, right-padded; labels
                                                     -100 on prompt and padding positions
      prompt_input_ids, prompt_attention_mask        LEFT-padded
      completion_input_ids, completion_attention_mask
                                                     right-padded
      teacher_prompt_input_ids, teacher_prompt_attention_mask
                                                     LEFT-padded (context baking only)
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> "CausalLMCollator":
        return cls(pad_token_id_for(tokenizer))

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("cannot collate an empty list of examples")
        prompts = [list(f[PROMPT]) for f in features]
        completions = [list(f[COMPLETION]) for f in features]
        full = [p + c for p, c in zip(prompts, completions)]
        labels = [[IGNORE_INDEX] * len(p) + c for p, c in zip(prompts, completions)]

        batch: dict[str, Any] = {}
        batch["input_ids"], batch["attention_mask"] = pad_sequences(full, self.pad_token_id, "right")
        batch["labels"], _ = pad_sequences(labels, IGNORE_INDEX, "right")
        batch["prompt_input_ids"], batch["prompt_attention_mask"] = pad_sequences(
            prompts, self.pad_token_id, "left"
        )
        batch["completion_input_ids"], batch["completion_attention_mask"] = pad_sequences(
            completions, self.pad_token_id, "right"
        )
        with_teacher = [TEACHER_PROMPT in f and f[TEACHER_PROMPT] is not None for f in features]
        if any(with_teacher):
            if not all(with_teacher):
                raise ValueError(
                    f"{TEACHER_PROMPT} is present in some examples of the batch but not in all; "
                    "prepare every split with the same teacher_context"
                )
            teacher = [list(f[TEACHER_PROMPT]) for f in features]
            batch["teacher_prompt_input_ids"], batch["teacher_prompt_attention_mask"] = pad_sequences(
                teacher, self.pad_token_id, "left"
            )
        return batch


class CausalLMEvalCollator(CausalLMCollator):
    """The training batch plus `references`: the gold target strings (a list, not a tensor).

    The eval loop generates from the left-padded prompt and scores the text against
    `references`; the string list never reaches a model or the HF Trainer.
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        batch["references"] = [str(f[TARGET_TEXT]) for f in features]
        return batch
