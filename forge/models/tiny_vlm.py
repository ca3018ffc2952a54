"""Offline vision-language models: Qwen3-VL's architecture at two tiny sizes, built from a config.

Why: no vision-language weights ship in any package and the hub is out of reach, yet OCR runs,
their tests and the benchmark need real `Qwen3VLForConditionalGeneration` models (the same class,
processor and chat markup as the hub's Qwen3-VL) that train on two CPU cores. So Forge builds them:
random-init weights (seed 0), SmolLM2's tokenizer and chat template (the only offline decoder
tokenizer) with Qwen-VL's vision special tokens added, and a PIL image processor with Qwen3-VL's
patching (16-pixel patches merged 2x2, so one prompt token per 32x32 pixels). `forge.models.packaged`
builds each once into the Forge cache (atomically, keyed by the tokenizer source's sha256), so every
run and rank sees the same model; the teacher is then *trained* on the task before distillation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from forge.models.vision_tokens import VISION_TOKENS

#: SmolLM2's vocabulary (49,152) followed by the four vision tokens, in VISION_TOKENS order.
BASE_VOCAB = 49152
VISION_START_ID, VISION_END_ID, IMAGE_ID, VIDEO_ID = range(BASE_VOCAB, BASE_VOCAB + 4)

#: Qwen3-VL's patching; pixels between 64x64 and 448x448 (a page is resized into that range,
#: keeping its aspect ratio; 448x448 gives 196 image tokens).
IMAGE_PROCESSOR: dict[str, Any] = {
    "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2,
    "min_pixels": 64 * 64, "max_pixels": 448 * 448,
}


def _text(hidden: int, layers: int, heads: int, head_dim: int) -> dict[str, Any]:
    rotary = head_dim // 2  # mrope splits the rotary pairs into (time, height, width) sections
    return {
        "vocab_size": BASE_VOCAB + len(VISION_TOKENS), "hidden_size": hidden, "intermediate_size": 3 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads // 2,
        "head_dim": head_dim, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": [rotary // 2, rotary // 4, rotary // 4]},
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
    }


def _vision(hidden: int, depth: int, out_hidden: int) -> dict[str, Any]:
    return {
        "depth": depth, "hidden_size": hidden, "intermediate_size": 3 * hidden, "num_heads": 2,
        "patch_size": IMAGE_PROCESSOR["patch_size"], "spatial_merge_size": IMAGE_PROCESSOR["merge_size"],
        "temporal_patch_size": IMAGE_PROCESSOR["temporal_patch_size"], "out_hidden_size": out_hidden,
        "num_position_embeddings": 256, "deepstack_visual_indexes": list(range(1, depth)),
    }


def _config(text: Mapping[str, Any], vision: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"],
        "text_config": dict(text), "vision_config": dict(vision),
        "image_token_id": IMAGE_ID, "video_token_id": VIDEO_ID,
        "vision_start_token_id": VISION_START_ID, "vision_end_token_id": VISION_END_ID,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
    }


#: SmolLM2's chat template, taught Qwen-VL's content parts: a message's content is a string (as
#: SmolLM2 renders it) or a list of parts, where an image part becomes the vision markup and a text
#: part its text. Chat servers (`transformers serve`, vLLM) render a page prompt sent with an
#: `image_url` part into exactly the ids Forge's handler builds from its markup string.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI "
    "assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] in ['image', 'image_url'] %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
#: what a build depends on beside its config (part of the packaged cache key)
TINY_VLM_BUILD_KEY = "chat-template-" + hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()[:12]

#: packaged name -> the full model config (what `packaged_config_dict` returns without building).
TINY_VLM_CONFIGS: dict[str, dict[str, Any]] = {
    # teacher: 4 text blocks, hidden 256; a 3-block vision tower (~17M parameters, 12.6M of them
    # the tied embedding)
    "tiny-qwen3vl-teacher": _config(_text(256, 4, 4, 64), _vision(128, 3, 256)),
    # student: 2 text blocks, hidden 128; a 2-block vision tower (~7M parameters)
    "tiny-qwen3vl-student": _config(_text(128, 2, 4, 32), _vision(64, 2, 128)),
}


def build_tiny_vlm_dir(tokenizer_dir: Path, out_dir: Path, config: Mapping[str, Any]) -> None:
    """Write a complete model folder: config + random-init weights (the caller seeds), the
    tokenizer with the vision tokens, the image processor's settings and the chat template."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from forge.models.vision_processor import PageProcessor

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    ids = tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    if ids != [VISION_START_ID, VISION_END_ID, IMAGE_ID, VIDEO_ID] or len(tokenizer) != config["text_config"]["vocab_size"]:
        raise ValueError(f"vision tokens got ids {ids} (vocab {len(tokenizer)}); the pinned config "
                         f"expects {[VISION_START_ID, VISION_END_ID, IMAGE_ID, VIDEO_ID]}")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**fields))
    model.save_pretrained(str(out_dir))
    tokenizer.chat_template = CHAT_TEMPLATE
    processor = PageProcessor(image_processor=Qwen2VLImageProcessorPil(**IMAGE_PROCESSOR), tokenizer=tokenizer,
                              chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(str(out_dir))
