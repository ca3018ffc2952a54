"""Page prompts in GRPO: the pixels that go with the task's own prompt token ids.

TRL's GRPOTrainer handles images only for prompts it renders itself (chat messages through the
processor). Forge's RL prompts are the task's prepared token ids, which already hold one image token
per merged patch, so the image side is supplied beside them: `PageBatch` processes a generation
batch's pages (one per row, PNG bytes from the rows' `page` column) once, and gives the model
inputs for any sequence that starts with those prompts: `pixel_values` and `image_grid_thw` (with
`num_images`, which TRL uses to split pixels between micro-batches), and `mm_token_type_ids`
marking the image tokens, which Qwen-VL's multimodal RoPE reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from forge.data.page_collate import decode_png
from forge.data.prompt_rows import RL_PAGE
from forge.decoding.vision import VisionInputs


@dataclass
class PageBatch:
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    image_token_id: int

    @classmethod
    def from_rows(cls, rows: Sequence[dict], processor: Any, device: Any) -> Optional["PageBatch"]:
        """The pages of a generation batch's rows, None when the rows hold no image column."""
        if not rows or RL_PAGE not in rows[0]:
            return None
        pixels = processor.image_processor(images=[decode_png(row[RL_PAGE]) for row in rows], return_tensors="pt")
        return cls(pixels["pixel_values"].to(device), pixels["image_grid_thw"].to(device), int(processor.image_token_id))

    def token_types(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids == self.image_token_id).long()

    def generation_fields(self, prompt_ids: Sequence[Sequence[int]]) -> dict[str, Any]:
        """TRL's `multimodal_fields` for generation (per-token types as lists: TRL left-pads them)."""
        types = [[int(t == self.image_token_id) for t in ids] for ids in prompt_ids]
        return {"pixel_values": self.pixel_values, "image_grid_thw": self.image_grid_thw, "mm_token_type_ids": types}

    def forward_kwargs(self, ids: torch.Tensor) -> dict[str, Any]:
        """What a forward pass over `ids` (prompt | completion rows of this batch) takes."""
        return {"pixel_values": self.pixel_values, "image_grid_thw": self.image_grid_thw,
                "num_images": [1] * ids.shape[0], "mm_token_type_ids": self.token_types(ids)}

    def vision(self, prompt_ids: torch.Tensor) -> VisionInputs:
        """The prompts' vision inputs, for a teacher scoring the rows through its backend."""
        return VisionInputs(self.pixel_values, self.image_grid_thw, self.token_types(prompt_ids))
