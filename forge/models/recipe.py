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

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Protocol

from forge.models.loading import load_model, normalize_spec, resize_embeddings_if_needed
from forge.models.lora import apply_lora, merged_for_saving
from forge.runtime.seeds import seeded


class StudentQuantizer(Protocol):
    """A quantization recipe for the student (none today): `prepare` before LoRA (e.g. fake-quant
    observers for QAT), `convert` after LoRA is merged (e.g. to real low-bit weights)."""

    def prepare(self, model: Any) -> Any: ...

    def convert(self, model: Any) -> Any: ...


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


def save_final(model: Any, processor: Any, out_dir: str | os.PathLike, *,
               quantizer: Optional[StudentQuantizer] = None, state_dict: Optional[dict[str, Any]] = None) -> Path:
    """merge LoRA → quantize (convert) → save model + processor into `out_dir` atomically (a temp dir,
    then a rename), so a run killed mid-save never leaves a `final/` that looks complete. Replaces an
    existing `out_dir`. The model given stays usable (LoRA is merged into a copy). `state_dict`: the
    weights to write instead of the model's own (a sharded model's, gathered by every rank)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = merged_for_saving(model)
    if quantizer is not None:
        merged = quantizer.convert(merged)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
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
