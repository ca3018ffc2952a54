"""Model kinds: what a task handler's `model_kind` means for loading, LoRA and model facts.

The one registry a new kind is added to. A handler says `model_kind = "classification"`; loading
asks this table for the Auto class, LoRA for peft's task type, validation for whether the model
has a freshly initialised label head (`num_labels`) or a pretrained vocabulary head. The
`vision_lm` kind serves image+text tasks (OCR): Qwen-VL-style models load through
`AutoModelForImageTextToText`, their inputs are prepared by `forge.models.vision_processor.PageProcessor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class ModelKind:
    """name: the handler's `model_kind`; auto_class: the transformers Auto class's name;
    peft_task: peft's TaskType name for LoRA; label_head: the head is a new classifier with
    `num_labels` outputs (else a pretrained LM head over the vocabulary); generates: the model
    produces text (eval by generation, GKD); processor_class: what prepares its inputs: a
    transformers class name (a tokenizer for text) or "module:Class" with a `from_model_dir`
    (the image+text processor of vision-language models)."""

    name: str
    auto_class: str
    peft_task: str
    label_head: bool
    generates: bool
    processor_class: str = "AutoTokenizer"
    #: a config attribute the kind's models must have (a vision tower's `vision_config`), and the
    #: fix when a model lacks it
    required_config: Optional[str] = None
    fix: str = ""

    def mismatch(self, config: Any) -> Optional[str]:
        """Why a model with this config cannot serve this kind (None: it can)."""
        if self.required_config is None or getattr(config, self.required_config, None) is not None:
            return None
        return (f"is a {getattr(config, 'model_type', '?')} model without a {self.required_config}, and the "
                f"task needs a {self.name} model")

    def auto(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_class)


MODEL_KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("classification", "AutoModelForSequenceClassification", "SEQ_CLS", label_head=True, generates=False),
        ModelKind("causal_lm", "AutoModelForCausalLM", "CAUSAL_LM", label_head=False, generates=True),
        ModelKind("vision_lm", "AutoModelForImageTextToText", "CAUSAL_LM", label_head=False, generates=True,
                  processor_class="forge.models.vision_processor:PageProcessor", required_config="vision_config",
                  fix="use a vision-language model pair: model=tiny_vlm (offline) or model=qwen3vl (hub)"),
    )
}


def model_kind(name: str) -> ModelKind:
    """The registered kind; an unknown name lists the valid ones."""
    try:
        return MODEL_KINDS[str(name)]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; valid: {', '.join(MODEL_KINDS)}") from None
