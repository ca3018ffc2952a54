"""Layer-subset copy: build a shallower model from a deeper one (DistilBERT's initialisation).

Why generic: BERT keeps its blocks at `bert.encoder.layer`, DistilBERT at
`distilbert.transformer.layer`, Llama-likes at `model.layers`. Rather than a table of paths, the
block list is found as the ModuleList whose length is the config's layer count. The student is built
fresh from a config with fewer layers (so per-layer indices such as a decoder's `layer_idx`, used by
the KV cache, are right) and every tensor is copied by name: block j of the student takes block
`layers[j]` of the source; everything else (embeddings, pooler, final norm, heads) is copied as is.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from torch import nn


def num_layers_of(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attr in ("num_hidden_layers", "n_layer", "n_layers"):
        if getattr(text, attr, None) is not None:
            return int(getattr(text, attr))
    raise ValueError(f"cannot tell the layer count of a {type(config).__name__}")


def find_block_list(model: nn.Module, num_layers: int | None = None) -> tuple[str, nn.ModuleList]:
    """(qualified name, ModuleList) of the transformer blocks; the biggest list of the right length."""
    if num_layers is None:
        num_layers = num_layers_of(model.config)
    candidates = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == num_layers
    ]
    if not candidates:
        raise ValueError(f"no ModuleList of {num_layers} blocks in {type(model).__name__}")
    return max(candidates, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def check_layer_subset(layers: Sequence[int], num_layers: int) -> list[str]:
    """Human-readable problems with `layers` as a subset of `num_layers` blocks (empty when fine)."""
    problems = []
    if not layers:
        problems.append("must list at least one layer (or be null to keep all)")
    bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < num_layers]
    if bad:
        problems.append(f"{sorted(set(bad), key=str)} out of range: the source has {num_layers} layers (0..{num_layers - 1})")
    dupes = sorted({i for i in layers if isinstance(i, int) and list(layers).count(i) > 1})
    if dupes:
        problems.append(f"duplicated layers {dupes}")
    if not bad and list(layers) != sorted(layers):
        problems.append(f"must be in increasing order, e.g. {sorted(set(layers))}")
    return problems


def subset_config(config: Any, layers: Sequence[int]) -> Any:
    """A copy of `config` with only `layers` (per-layer lists such as `layer_types` follow)."""
    config = copy.deepcopy(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    total = num_layers_of(config)
    for attr in ("num_hidden_layers", "n_layer", "n_layers"):
        if getattr(text, attr, None) is not None:
            setattr(text, attr, len(layers))
            break
    for attr in ("layer_types", "sliding_window_layers"):
        value = getattr(text, attr, None)
        if isinstance(value, (list, tuple)) and len(value) == total:
            setattr(text, attr, [value[i] for i in layers])
    return config


def copy_layer_subset(source: nn.Module, target: nn.Module, layers: Sequence[int]) -> None:
    """Load `target` (built with len(layers) blocks) from `source`: block j <- source block layers[j].

    Strict: every target tensor must have a source tensor of the same shape, so a mismatched
    architecture fails loudly instead of leaving random weights behind.
    """
    src_prefix, src_blocks = find_block_list(source)
    tgt_prefix, tgt_blocks = find_block_list(target, len(layers))
    if src_prefix != tgt_prefix:
        raise ValueError(f"block lists differ: source {src_prefix!r}, target {tgt_prefix!r}")
    problems = check_layer_subset(layers, len(src_blocks))
    if problems:
        raise ValueError(f"init_layers {list(layers)}: " + "; ".join(problems))
    src_state = source.state_dict()
    new_state = {}
    head = tgt_prefix + "."
    for name, tensor in target.state_dict().items():
        src_name = name
        if name.startswith(head):
            index, rest = name[len(head):].split(".", 1)
            src_name = f"{head}{layers[int(index)]}.{rest}"
        if src_name not in src_state:
            raise ValueError(f"source has no tensor {src_name!r} for target {name!r}")
        if src_state[src_name].shape != tensor.shape:
            raise ValueError(f"shape mismatch {src_name}: {tuple(src_state[src_name].shape)} "
                             f"vs {name}: {tuple(tensor.shape)}")
        new_state[name] = src_state[src_name]
    target.load_state_dict(new_state, strict=True)
