"""The image side of a prompt, carried beside its token ids through generation and scoring.

Why one object: on-policy sampling, the teacher's scoring and generation-only teachers all take a
batch's prompts somewhere else, and with page tasks the prompt is ids AND pixels. `VisionInputs`
holds what an in-process Qwen-VL model needs (`pixel_values`, `image_grid_thw`, and which prompt
positions are image tokens, which its multimodal RoPE reads) and the pages as PNG bytes for a
backend that reads images itself (an OCR engine, a server that accepts images). A sequence that
extends the prompt (prompt | completion) has text-only positions after it: `model_kwargs(extra)`
pads the token types with zeros for them. Multimodal RoPE numbers positions itself from the
attention mask, so callers pass no `position_ids` when vision inputs are present.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch


@dataclass
class VisionInputs:
    """pixel_values: all patches of the batch's pages, concatenated; image_grid_thw: [B, 3], one
    page per row; prompt_token_types: [B, P], 1 at the prompt's image tokens (P = the prompt's
    padded width); pages: each row's page as PNG bytes (None when not carried); messages: each row's
    prompt as chat messages with an `{"type": "image"}` part for its page (for chat servers)."""

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    prompt_token_types: torch.Tensor
    pages: Optional[Sequence[bytes]] = None
    messages: Optional[Sequence[list]] = None

    def model_kwargs(self, extra: int = 0) -> dict[str, torch.Tensor]:
        """What `model(...)` / `model.generate(...)` take for the prompt followed by `extra`
        text-only positions."""
        types = self.prompt_token_types
        if extra:
            types = torch.cat([types, types.new_zeros(types.shape[0], extra)], dim=1)
        return {"pixel_values": self.pixel_values, "image_grid_thw": self.image_grid_thw, "mm_token_type_ids": types}

    def to(self, device: Any) -> "VisionInputs":
        return VisionInputs(self.pixel_values.to(device), self.image_grid_thw.to(device),
                            self.prompt_token_types.to(device), self.pages, self.messages)

    def images(self) -> list[Any]:
        """The pages as PIL images (for backends that read images themselves)."""
        from PIL import Image

        if self.pages is None:
            raise ValueError("these vision inputs carry no page images (only pixel tensors)")
        return [Image.open(io.BytesIO(page)).convert("RGB") for page in self.pages]


def vision_inputs(batch: Mapping[str, Any], prompt: str = "prompt") -> Optional[VisionInputs]:
    """The vision inputs of a batch's `prompt` ("prompt" or "teacher_prompt"), None for text batches."""
    if "pixel_values" not in batch:
        return None
    own = "teacher_" if prompt == "teacher_prompt" and "teacher_pixel_values" in batch else ""  # the teacher's view
    return VisionInputs(batch[f"{own}pixel_values"], batch[f"{own}image_grid_thw"],
                        batch[f"{prompt}_mm_token_type_ids"], batch.get("pages"), batch.get(f"{prompt}_messages"))
