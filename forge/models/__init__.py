"""Model loading: hub ids, local dirs and packaged offline models; layer subsets; LoRA; saving.

Exports resolve lazily (PEP 562) because `forge.models.info` is imported by config validation and
losses, which must not pay for importing torch, transformers and peft.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelInfo": "forge.models.info",
    "Spec": "forge.models.loading",
    "ModelUnavailableError": "forge.models.loading",
    "normalize_spec": "forge.models.loading",
    "model_dir_or_id": "forge.models.loading",
    "load_config": "forge.models.loading",
    "read_model_info": "forge.models.loading",
    "validate_model_spec": "forge.models.loading",
    "auto_class_for": "forge.models.loading",
    "load_tokenizer": "forge.models.loading",
    "load_model": "forge.models.loading",
    "resize_embeddings_if_needed": "forge.models.loading",
    "apply_lora": "forge.models.lora",
    "merged_for_saving": "forge.models.lora",
    "build_student": "forge.models.recipe",
    "save_final": "forge.models.recipe",
    "load_final": "forge.models.recipe",
    "model_kind": "forge.models.kinds",
    "resolve_packaged_dir": "forge.models.packaged",
    "PackagedModelError": "forge.models.packaged",
    "ChecksumMismatch": "forge.models.packaged",
    "copy_layer_subset": "forge.models.layers",
    "find_block_list": "forge.models.layers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forge.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
