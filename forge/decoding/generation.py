"""Completions for left-padded prompts, as the GKD trainer and teacher backends need them.

One layout everywhere: a batch is a LEFT-padded prompt block [B, P] followed by a RIGHT-padded
completion block [B, C]. Concatenated, every row reads [pad… prompt | completion …pad] with no
holes, so position t+1's token sits right after position t's for prompt and completion alike,
and the logits that predict completion token j sit at column P - 1 + j for every row.

It sits below trainers and teachers: the GKD trainer samples with it, the in-process teacher
backend generates with it, and neither needs the other to do so.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """position_ids for sequences with padding anywhere: real tokens count 0, 1, 2, ...

    A forward pass (unlike `generate`) numbers positions 0..T-1 whatever the mask says, so a
    left-padded prompt would put its first real token at position 3 instead of 0 and the
    teacher's logits would differ from an unpadded run.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def eos_ids(model: Any, eos_token_id: Optional[int | Sequence[int]] = None) -> list[int]:
    """EOS ids to stop on: the argument, else the model's generation config."""
    value = eos_token_id
    if value is None:
        config = getattr(model, "generation_config", None)
        value = getattr(config, "eos_token_id", None) if config is not None else None
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def completion_mask(completions: torch.Tensor, eos: Sequence[int]) -> torch.Tensor:
    """1 up to and including each row's first EOS, 0 after it (the EOS itself is a target)."""
    if not eos or completions.shape[1] == 0:
        return torch.ones_like(completions)
    is_eos = torch.zeros_like(completions, dtype=torch.bool)
    for token in eos:
        is_eos |= completions == token
    after_first_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~after_first_eos).long()


@torch.no_grad()
def generate_completions(model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *,
                         max_new_tokens: int, temperature: float = 1.0, do_sample: bool = True,
                         eos_token_id: Optional[int | Sequence[int]] = None,
                         pad_token_id: Optional[int] = None, vision: Any = None) -> torch.Tensor:
    """[B, C] new tokens (C ≤ max_new_tokens), with everything after a row's first EOS set to pad.

    Works for peft models too: `generate` runs with the adapters enabled, so an on-policy sample
    is the sample of the model being trained. Sampling draws from torch's global RNG; the GKD
    trainer seeds it per (seed, rank, step) around each call, so ranks sample differently and a
    resumed run samples what the uninterrupted one would have. `vision`: the prompts' page inputs
    (`forge.decoding.vision.VisionInputs`) for a vision-language model.
    """
    from forge.models.quantized_inference import rounded_weights_fixed

    eos = eos_ids(model, eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    device = prompt_ids.device
    was_training = model.training
    model.eval()
    try:
        kwargs: dict[str, Any] = {"do_sample": do_sample, "max_new_tokens": int(max_new_tokens),
                                  "pad_token_id": pad, "use_cache": True}
        if do_sample:
            kwargs.update(temperature=float(temperature), top_k=0, top_p=1.0)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        if eos:
            kwargs["eos_token_id"] = eos
        if vision is not None:
            kwargs.update(vision.to(device).model_kwargs())
        with rounded_weights_fixed(model):  # a QAT student's rounding, once per call (forge.models.quantized_inference)
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, **kwargs)
    finally:
        model.train(was_training)
    completions = out[:, prompt_ids.shape[1]:].to(device)
    keep = completion_mask(completions, eos)
    return completions.masked_fill(keep == 0, pad)
