"""Batches of page → markdown examples for vision-language models: the causal-LM layout plus pixels.

A prepared page example is a prompt → completion example (`forge.data.causal_collate`) whose prompt
already holds one `<|image_pad|>` token per merged patch of its image, and whose image is kept as
PNG bytes (lossless, compact in a `datasets.Dataset`, and decoded to the same pixels every epoch).
The collator lays out the text exactly as for text-only tasks (labels -100 on the prompt, so on every
image token, and on padding: the loss is on the answer only, in CE and in every KD loss) and runs the
image processor over the batch's pages for `pixel_values` (all patches of the batch, concatenated, as
Qwen-VL models take them) and `image_grid_thw` (one row per page).
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Optional, Sequence

from PIL import Image

from forge.data.causal_collate import TARGET_TEXT, CausalLMCollator, pad_token_id_for

#: the column holding each example's page image as PNG bytes.
IMAGE = "image"
#: the batch key holding each row's page as PNG bytes (a list, never given to a model).
PAGES = "pages"
#: the batch keys an image adds (the model takes them with input_ids).
PIXEL_KEYS: tuple[str, ...] = ("pixel_values", "image_grid_thw")
#: id sequences of a batch that may hold image tokens, each paired with its token-type key: the
#: model's multimodal RoPE reads which positions are image tokens (1) and which are text (0).
TOKEN_TYPE_KEYS: dict[str, str] = {
    "input_ids": "mm_token_type_ids",
    "prompt_input_ids": "prompt_mm_token_type_ids",
    "teacher_prompt_input_ids": "teacher_prompt_mm_token_type_ids",
}


def encode_png(image: Image.Image) -> bytes:
    """The page as PNG bytes (RGB): lossless, so training sees exactly the rendered pixels."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


class PageCollator(CausalLMCollator):
    """The causal-LM batch (`CausalLMCollator`) plus `pixel_values` and `image_grid_thw`.

    image_processor: the model's image processor (`PageProcessor.image_processor`); its resize
    bounds are those `prepare` used to count each prompt's image tokens.
    messages: each prompt ("prompt", "teacher_prompt") as chat messages with an image part (the
    handler's `page_messages`), carried as `<prompt>_messages` for teachers that are sent the page.
    """

    def __init__(self, pad_token_id: int, image_processor: Any, image_token_id: int,
                 teacher_image_processor: Any = None, messages: Optional[Mapping[str, list]] = None) -> None:
        super().__init__(pad_token_id)
        self.image_processor = image_processor
        self.image_token_id = int(image_token_id)
        self.teacher_image_processor = teacher_image_processor
        self.messages = dict(messages or {})

    @classmethod
    def for_processor(cls, processor: Any, teacher_image_processor: Any = None,
                      messages: Optional[Mapping[str, list]] = None) -> "PageCollator":
        """teacher_image_processor: the teacher's own view of each page (another resolution)."""
        return cls(pad_token_id_for(processor.tokenizer), processor.image_processor, processor.image_token_id,
                   teacher_image_processor, messages)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        images = [decode_png(f[IMAGE]) for f in features]
        pixels = self.image_processor(images=images, return_tensors="pt")
        batch.update({key: pixels[key] for key in PIXEL_KEYS})
        if self.teacher_image_processor is not None:
            pixels = self.teacher_image_processor(images=images, return_tensors="pt")
            batch.update({f"teacher_{key}": pixels[key] for key in PIXEL_KEYS})
        for ids_key, types_key in TOKEN_TYPE_KEYS.items():
            if ids_key in batch:
                batch[types_key] = (batch[ids_key] == self.image_token_id).long()
        batch[PAGES] = [f[IMAGE] for f in features]  # PNG bytes, for teachers that read images themselves
        for prompt, messages in self.messages.items():
            if f"{prompt}_input_ids" in batch:
                batch[f"{prompt}_messages"] = [messages] * len(features)
        return batch


class PageEvalCollator(PageCollator):
    """The training batch plus `references`: the gold markdown strings (a list, not a tensor)."""

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(features)
        batch["references"] = [str(f[TARGET_TEXT]) for f in features]
        return batch
