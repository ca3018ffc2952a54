"""Dequantise a Llama-architecture GGUF file once into a plain Hugging Face model directory.

Why: transformers can read a GGUF (it dequantises to float32 on load, ~13-20 s for SmolLM2-135M),
but `save_pretrained` refuses the GGUF-loaded model and its config carries a `quantization_config`
that would leak into every student built from it. So Forge builds a plain `LlamaForCausalLM` from
the pinned architecture, loads the dequantised weights into it, and saves that (with the tokenizer
and chat template from the GGUF) under the packaged-model cache; reloading takes well under a second.
The architecture read from the GGUF must match the pinned one, so a different file is refused
rather than silently loaded into the wrong shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

#: keys whose values must agree between the pinned config and the one read from the GGUF.
ARCHITECTURE_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings",
)


def convert_gguf_llama_to_dir(gguf_path: Path, out_dir: Path, pinned_config: Mapping[str, Any]) -> None:
    """Write config.json, model.safetensors, generation_config.json and tokenizer files to out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    source = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    read = source.config.to_dict()
    mismatched = {k: (pinned_config.get(k), read.get(k)) for k in ARCHITECTURE_KEYS
                  if k in pinned_config and pinned_config.get(k) != read.get(k)}
    if mismatched:
        raise ValueError(f"{gguf_path} does not have the pinned architecture (key: pinned, read): {mismatched}")
    config = LlamaConfig(**{k: v for k, v in pinned_config.items() if k not in ("model_type", "architectures")})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    # A tied LM head is not stored separately; anything else missing means a wrong mapping.
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"dequantised weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    model.generation_config = source.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out_dir)
