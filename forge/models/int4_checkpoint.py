"""The on-disk form of a converted INT4 student: real 4-bit weights, half a byte per weight.

Why Forge writes it by hand: `save_pretrained` cannot serialise torchao's converted weights on this
stack (torchao 0.18 `IntxUnpackedToInt8Tensor`: safetensors and pickle both fail with "invalid python
storage"), and torchao keeps the int4 values one per int8. So `final/` of a quantized run holds:

- `model.safetensors`: every plain tensor, plus for each quantized linear layer `<layer>.weight.qdata`
  (two int4 values per uint8, low nibble first, stored as value + 8), `.scale` and `.zero_point`;
- `quantization.json`: the recipe (method, scheme, group size) and each layer's shape and block size;
- the model's `config.json` (and generation config) and the processor, as any `final/`.

`load_quantized(final_dir)` rebuilds the model with the same torchao tensors, so its forward equals
the trained student's converted forward exactly. The layout is versioned (`FORMAT`).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

FORMAT = "forge-int4/1"
MANIFEST = "quantization.json"
WEIGHTS = "model.safetensors"
_PARTS = ("qdata", "scale", "zero_point")


def pack_int4(values: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7] (last dim even) → uint8, two per byte (low nibble = even position)."""
    if values.shape[-1] % 2:
        raise ValueError(f"pack_int4 needs an even last dimension, got {tuple(values.shape)}")
    if values.numel() and (int(values.min()) < -8 or int(values.max()) > 7):
        raise ValueError("pack_int4: values outside the int4 range [-8, 7]")
    shifted = (values.to(torch.int16) + 8).to(torch.uint8)
    return shifted[..., 0::2] | (shifted[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack_int4`: uint8 (…, n/2) → int8 (…, n) in [-8, 7]."""
    low = (packed & 0x0F).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack((low, high), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def _int4_weight_type() -> type:
    from torchao.quantization import IntxUnpackedToInt8Tensor

    return IntxUnpackedToInt8Tensor


def int4_weight(levels: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, block_size: tuple[int, ...],
                dtype: torch.dtype = torch.float32, activation_quantization: Any = None) -> Any:
    """torchao's int4 weight from its int4 levels (held in int8), scales and zero points: what
    `convert` produces, built from a checkpoint or from another library's output."""
    return _int4_weight_type()(levels, scale, zero_point, torch.int4, block_size, dtype, activation_quantization)


def quantized_layers(model: torch.nn.Module) -> dict[str, Any]:
    """name → converted int4 weight of every layer `convert` turned into real int4 weights."""
    kind = _int4_weight_type()
    return {name: module.weight for name, module in model.named_modules()
            if isinstance(getattr(module, "weight", None), kind)}


def save_quantized(model: Any, directory: str | os.PathLike, recipe: dict[str, Any]) -> Path:
    """Write a converted model (see module docstring) into `directory`, which must exist."""
    from safetensors.torch import save_file

    out = Path(directory)
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("save_quantized: the model holds no converted int4 layer (was it converted?)")
    quantized_keys = {f"{name}.weight" for name in layers}
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        if key in quantized_keys or tensor.data_ptr() in seen:  # a tied weight is written once
            continue
        seen.add(tensor.data_ptr())
        tensors[key] = tensor.detach().cpu().contiguous()
    manifest_layers = {}
    for name, weight in layers.items():
        inner, context = weight.__tensor_flatten__()
        parts = {part: getattr(weight, part).detach().cpu().contiguous() for part in inner}
        parts["qdata"] = pack_int4(parts["qdata"])
        tensors.update({f"{name}.weight.{part}": value for part, value in parts.items()})
        manifest_layers[name] = {"shape": list(weight.shape), "block_size": list(context["block_size"]),
                                 "dtype": str(context["dtype"]).removeprefix("torch."),
                                 "activation_quantization": context["activation_quantization"]}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt", "forge": FORMAT})
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]  # what load_quantized builds (save_pretrained does the same)
    config.save_pretrained(str(out))
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(str(out))
    manifest = {"format": FORMAT, **recipe, "layers": manifest_layers}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def is_quantized_dir(directory: str | os.PathLike) -> bool:
    return (Path(directory) / MANIFEST).is_file()


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    manifest = json.loads((Path(directory) / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{directory}/{MANIFEST}: format {manifest.get('format')!r}, this Forge reads {FORMAT!r}")
    return manifest


def saved_model_class(directory: str | os.PathLike) -> type:
    """The transformers class a saved model directory's config.json names (`architectures[0]`)."""
    import transformers

    architectures = transformers.AutoConfig.from_pretrained(str(directory)).architectures or []
    if not architectures or not hasattr(transformers, architectures[0]):
        raise ValueError(f"{directory}/config.json names no transformers model class (architectures: {architectures})")
    return getattr(transformers, architectures[0])


def load_quantized(directory: str | os.PathLike, model_class: Optional[type] = None) -> Any:
    """The converted model saved by `save_quantized`, in eval mode (its class from config.json's
    `architectures` unless `model_class` is given)."""
    import transformers
    from safetensors.torch import load_file

    directory = Path(directory)
    manifest = read_manifest(directory)
    config = transformers.AutoConfig.from_pretrained(str(directory))
    cls = model_class or saved_model_class(directory)
    model = cls(config)
    tensors = load_file(str(directory / WEIGHTS))
    part_keys = {f"{name}.weight.{part}" for name in manifest["layers"] for part in _PARTS}
    missing, _ = model.load_state_dict({k: v for k, v in tensors.items() if k not in part_keys}, strict=False)
    expected = {f"{name}.weight" for name in manifest["layers"]} | _tied_keys(model)
    if set(missing) - expected:
        raise KeyError(f"{directory}/{WEIGHTS} lacks {sorted(set(missing) - expected)[:5]}")
    for name, layer in manifest["layers"].items():
        weight = int4_weight(unpack_int4(tensors[f"{name}.weight.qdata"]), tensors[f"{name}.weight.scale"],
                             tensors[f"{name}.weight.zero_point"], tuple(layer["block_size"]),
                             getattr(torch, layer["dtype"]), layer["activation_quantization"])
        model.get_submodule(name).weight = torch.nn.Parameter(weight, requires_grad=False)
    model.tie_weights()
    return model.eval()


def _tied_keys(model: Any) -> set[str]:
    """Weights the model ties to another (an LM head sharing the embeddings): written once."""
    return set(getattr(model, "_tied_weights_keys", None) or ())


def directory_bytes(directory: str | os.PathLike) -> int:
    """Bytes of every file under `directory` (a final model's size on disk)."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
