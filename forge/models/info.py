"""Architecture facts read from a model's config alone (no weights), so losses can be validated
against the student/teacher pair before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelInfo:
    """What a loss needs to know about one model to build layer maps and projections.

    `num_layers` counts transformer blocks; hidden-state index 0 is the embedding output, so
    hidden-state tuples have `num_layers + 1` entries while attention tuples have `num_layers`.
    `head_trained` says whether the task head (classifier / LM head) carries trained weights:
    a response loss from an untrained head distils noise, so it is refused.
    """

    num_layers: int
    hidden_size: int
    num_heads: int
    output_size: int  # num_labels for classifiers, vocab size for LMs
    head_trained: bool = True
    is_decoder: bool = False

    @classmethod
    def from_hf_config(cls, config: Any, *, head_trained: bool = True) -> "ModelInfo":
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        is_decoder = bool(getattr(text, "is_decoder", False)) or text.model_type in {
            "llama", "qwen2", "qwen3", "mistral", "gpt2", "gemma", "phi3",
        }
        output = getattr(text, "vocab_size", 0) if is_decoder else getattr(config, "num_labels", 2)
        return cls(
            num_layers=int(getattr(text, "num_hidden_layers", getattr(text, "n_layer", 0))),
            hidden_size=int(getattr(text, "hidden_size", getattr(text, "n_embd", 0))),
            num_heads=int(getattr(text, "num_attention_heads", getattr(text, "n_head", 0))),
            output_size=int(output),
            head_trained=head_trained,
            is_decoder=is_decoder,
        )
