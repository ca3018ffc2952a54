"""The special tokens a Qwen-VL tokenizer carries (names as in Qwen3-VL's tokenizer), in one light
module: the offline model builder and config-time checks need them without importing transformers."""

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
VISION_TOKENS: tuple[str, ...] = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)
