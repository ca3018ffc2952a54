"""The image + text processor of Qwen-VL-family models, without torchvision.

Why not `AutoProcessor`: `Qwen3VLProcessor` always builds a video processor, and video processors
need torchvision, which has no working CPU build on these machines (DESIGN.md §4). Pages are
images, never videos, so `PageProcessor` is Qwen3-VL's processor with the video slot removed: the
tokenizer (carrying the vision special tokens) plus `Qwen2VLImageProcessorPil`, the PIL-backed
image processor Qwen3-VL's own image pipeline uses. It expands each `<|image_pad|>` of a prompt into
one token per merged patch, exactly as the upstream processor does (it inherits that code), so a
hub Qwen3-VL checkpoint and the offline tiny models are prepared the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from forge.models.vision_tokens import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, VISION_TOKENS



class PageProcessor(Qwen3VLProcessor):
    """Qwen3-VL's processor for images and text only (no video processor, so no torchvision)."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                 **kwargs: Any) -> None:
        missing = [t for t in VISION_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
        if missing:
            raise ValueError(f"the tokenizer lacks the vision special tokens {missing}; a Qwen-VL "
                             "tokenizer (or one built by forge.models.tiny_vlm) carries them")
        self.image_token, self.video_token = IMAGE_PAD, VIDEO_PAD
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
        self.vision_start_token, self.vision_end_token = VISION_START, VISION_END
        self.vision_start_token_id = tokenizer.convert_tokens_to_ids(VISION_START)
        self.vision_end_token_id = tokenizer.convert_tokens_to_ids(VISION_END)

    @classmethod
    def from_model_dir(cls, path: str | Path, **hub_kwargs: Any) -> "PageProcessor":
        """Tokenizer, image-processor settings (`preprocessor_config.json`) and chat template of a
        saved model (a hub id or a folder), assembled without the video processor."""
        tokenizer = AutoTokenizer.from_pretrained(str(path), **hub_kwargs)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path), **hub_kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer,
                   chat_template=getattr(tokenizer, "chat_template", None))


def register_with_auto_processor() -> None:
    """Let `AutoProcessor` load a folder whose processor is a `PageProcessor` (the offline tiny VLMs, a
    trained run's `final/`): servers such as `transformers serve` load processors through it, and
    without this they fall back to the bare tokenizer and drop every image."""
    from transformers import AutoProcessor, Qwen3VLConfig

    AutoProcessor.register(Qwen3VLConfig, PageProcessor, exist_ok=True)

