"""The student recipe and the one way a final model is saved.

Why one place: the pipeline builds the student with it, `forge.open_run` rebuilds a run's student
with it before loading a checkpoint's weights, and later wave-2 students (INT4 quantization-aware
ones) only add a hook. The order matters and is fixed here:

    build:  load (init drawn from its own seed) → resize embeddings → quantize (prepare) → LoRA
    save:   merge LoRA → quantize (convert) → save model + processor, atomically

Resizing after peft wraps the model would leave the new rows outside the trainable set; LoRA must
wrap the fake-quantised layers, and be merged before they are converted.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from forge.models.loading import load_model, normalize_spec, resize_embeddings_if_needed
from forge.models.lora import apply_lora, merged_for_saving
from forge.runtime.seeds import seeded


class StudentQuantizer(Protocol):
    """A quantization recipe for the student (`model.student.quantization`, e.g.
    forge.models.quantization.Int4QAT): `prepare` before LoRA (fake quantization for QAT), `convert`
    after LoRA is merged (real low-bit weights), `save` writes the converted model."""

    #: True when `convert` needs calibration token ids (GPTQ, AWQ), which the pipeline then passes
    needs_calibration: bool
    #: True when the student trains through the quantization (QAT); False when it is applied at the end
    quantizes_in_training: bool

    def prepare(self, model: Any) -> Any: ...

    def convert(self, model: Any, calibration: Optional[Sequence[Sequence[int]]] = None) -> Any: ...

    def save(self, model: Any, directory: str) -> None: ...


def quantizer_of(spec: Any) -> Optional[StudentQuantizer]:
    """The StudentQuantizer `spec.quantization` builds (`_target_`), or None for a full-precision student."""
    node = spec.get("quantization") if hasattr(spec, "get") else getattr(spec, "quantization", None)
    if node is None:
        return None
    import hydra.utils

    return hydra.utils.instantiate(node, _convert_="all")


def tokenizer_of(processor: Any) -> Any:
    """The text tokenizer of a processor (an image+text processor holds one), or the tokenizer itself."""
    return getattr(processor, "tokenizer", None) or processor


def build_student(spec: Any, processor: Any, *, kind: str, num_labels: Optional[int],
                  attn_implementation: str = "sdpa", seed: Optional[int] = None,
                  quantizer: Optional[StudentQuantizer] = None) -> Any:
    """load → resize embeddings → quantize (prepare) → LoRA (when `spec.lora.enabled`)."""
    s = normalize_spec(spec)
    with seeded(seed):
        model = load_model(s, kind=kind, num_labels=num_labels, attn_implementation=attn_implementation)
    if processor is not None:
        resize_embeddings_if_needed(model, tokenizer_of(processor))
    if quantizer is not None:
        model = quantizer.prepare(model)
    return apply_lora(model, s.lora, kind)


def final_form(model: Any, quantizer: Optional[StudentQuantizer] = None,
               calibration: Optional[Sequence[Sequence[int]]] = None) -> Any:
    """The model as final/ will hold it: LoRA merged (into a copy), then converted by the quantizer.

    Why a quantized run scores this and not the trained model: LoRA adapters train in float on top of
    the fake-quantized base (quant(W)x + BAx), while the deployed layer is quant(W + BA)x; only the
    converted model is what a user of final/ gets. A model that already holds int4 layers is final as
    it is. `calibration`: the token ids a calibrated quantizer (GPTQ, AWQ) needs."""
    from forge.models.int4_checkpoint import quantized_layers

    if quantizer is None:
        return merged_for_saving(model)
    if quantized_layers(model):
        return model
    merged = merged_for_saving(model)
    return quantizer.convert(merged if merged is not model else copy.deepcopy(model), calibration)


def save_final(model: Any, processor: Any, out_dir: str | os.PathLike, *,
               quantizer: Optional[StudentQuantizer] = None, state_dict: Optional[dict[str, Any]] = None) -> Path:
    """merge LoRA → quantize (convert) → save model + processor into `out_dir` atomically (a temp dir,
    then a rename), so a run killed mid-save never leaves a `final/` that looks complete. Replaces an
    existing `out_dir`. The model given stays usable (LoRA is merged into a copy). `state_dict`: the
    weights to write instead of the model's own (a sharded model's, gathered by every rank). With a
    quantizer, a copy is converted (the model given keeps training-time fake quantization)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = final_form(model, quantizer)  # a converted model (the one the pipeline scored) is saved as it is
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        if quantizer is not None:
            quantizer.save(merged, str(tmp))
        else:
            merged.save_pretrained(str(tmp), safe_serialization=True, state_dict=state_dict)
        if processor is not None:
            processor.save_pretrained(str(tmp))
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_final(directory: str | os.PathLike, kind: Optional[str] = None) -> Any:
    """A run's final/ model in eval mode: `forge.models.load_final("RUN/final")`. A quantized run's
    int4 model comes back with its int4 weights (forge.models.int4_checkpoint); any other loads with
    the kind's Auto class (`kind`, e.g. "causal_lm"), or the class config.json names."""
    from forge.models.int4_checkpoint import is_quantized_dir, load_quantized, saved_model_class

    if is_quantized_dir(directory):
        return load_quantized(directory)
    if kind is not None:
        from forge.models.loading import auto_class_for

        return auto_class_for(kind).from_pretrained(str(directory)).eval()
    return saved_model_class(directory).from_pretrained(str(directory)).eval()


def _safetensors_state(directory: Path, name: str) -> Optional[dict[str, Any]]:
    """Every tensor of `<name>.safetensors` (or its shards, by `<name>.safetensors.index.json`)."""
    import json

    from safetensors.torch import load_file

    single, index = directory / f"{name}.safetensors", directory / f"{name}.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        state: dict[str, Any] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(directory / shard)))
        return state
    return None


def load_trained_weights(model: Any, directory: str | os.PathLike, part: Optional[str] = None) -> Any:
    """Load the weights a trainer saved in `directory` (a checkpoint-N) into `model`, built by the
    same recipe. The file is a peft adapter (`adapter_model.safetensors`), a whole model, or the
    state dict of a module that wraps several models (the KD trainer's `student.*`, `teacher.*`,
    `loss.*`): `part` names the one wanted. Raises if a weight is missing."""
    from peft import set_peft_model_state_dict

    directory = Path(directory)
    adapter = _safetensors_state(directory, "adapter_model")
    if adapter is not None:
        set_peft_model_state_dict(model, adapter)
        return model
    state = _safetensors_state(directory, "model")
    if state is None:
        raise FileNotFoundError(f"{directory} holds no model.safetensors or adapter_model.safetensors")
    wrapped = {key.split(".", 1)[0] for key in state} & {"student", "teacher", "loss"}
    if wrapped:
        if part not in wrapped:
            raise KeyError(f"{directory}: the checkpoint holds {sorted(wrapped)}, not '{part}'")
        state = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(f"{part}.")}
    missing, _ = model.load_state_dict(state, strict=False)
    really_missing = [k for k in missing if k not in _tied_names(model)]
    if really_missing:
        raise KeyError(f"{directory}: weights missing for {really_missing[:5]} (of {len(really_missing)})")
    return model


def _tied_names(model: Any) -> set[str]:
    """Names of parameters that share storage with an earlier one (saved once, e.g. a tied LM head)."""
    seen: dict[int, str] = {}
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = tensor.data_ptr()
        if key in seen:
            tied.add(name)
        else:
            seen[key] = name
    return tied
