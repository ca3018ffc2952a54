"""ONNX (PyTorch-exported BERT) -> Hugging Face `BertModel` state dict.

Why: paraphrase-MiniLM-L3-v2 ships only as ONNX, yet Forge trains it with PyTorch. The export keeps
PyTorch names for embeddings, LayerNorms and biases, but stores every Linear weight as an unnamed,
transposed MatMul initializer (`onnx::MatMul_470`, shape [in, out]). Each such MatMul feeds an Add
whose other input is the named bias (`...attention.self.query.bias`), so the weight takes the bias's
name with `weight` and is transposed back to PyTorch's [out, in]. The exporter's module prefix
(`model.0.auto_model.` for sentence-transformers) is stripped. Nothing is guessed from shapes or
order: a MatMul weight with no named bias after it is an error.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

_WORD_EMB = "embeddings.word_embeddings.weight"


def _load_graph(onnx_path: Path):
    import onnx

    return onnx.load(str(onnx_path)).graph


def onnx_bert_state_dict(onnx_path: Path | str) -> dict[str, np.ndarray]:
    """BertModel-named float32 arrays from a PyTorch-exported BERT ONNX file (no pooler unless the
    export has one)."""
    from onnx import numpy_helper

    graph = _load_graph(Path(onnx_path))
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    prefix = _module_prefix(inits)
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    state: dict[str, np.ndarray] = {}
    for name, value in inits.items():
        if name.startswith(prefix) and not name.startswith("onnx::"):
            state[name[len(prefix):]] = value
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        weight_name = node.input[1]
        if weight_name.startswith(prefix) and not weight_name.startswith("onnx::"):
            raise ValueError(f"named MatMul weight {weight_name!r}: layout unknown, refusing to guess")
        bias = _following_bias(node, consumers, inits)
        if bias is None:
            raise ValueError(
                f"MatMul {node.name or node.output[0]!r} with weight {weight_name!r} is not followed "
                "by an Add with a named bias; cannot name its weight"
            )
        key = bias[len(prefix):-len("bias")] + "weight"
        if key in state:
            raise ValueError(f"two MatMul weights map to {key!r}")
        state[key] = np.ascontiguousarray(inits[weight_name].T)
    return {k: v.astype(np.float32, copy=False) for k, v in state.items()}


def _module_prefix(inits: dict[str, np.ndarray]) -> str:
    for name in inits:
        if name.endswith(_WORD_EMB):
            return name[: -len(_WORD_EMB)]
    raise ValueError(f"no '*{_WORD_EMB}' initializer: not a BERT export")


def _following_bias(node: Any, consumers: dict[str, list[Any]], inits: dict) -> str | None:
    for user in consumers[node.output[0]]:
        if user.op_type != "Add":
            continue
        for name in user.input:
            if name in inits and name.endswith(".bias"):
                return name
    return None


def layer_norm_eps(onnx_path: Path | str) -> float | None:
    """The epsilon of the graph's LayerNormalization nodes (None if the export decomposed them)."""
    from onnx import helper

    for node in _load_graph(Path(onnx_path)).node:
        if node.op_type == "LayerNormalization":
            for attr in node.attribute:
                if attr.name == "epsilon":
                    return float(helper.get_attribute_value(attr))
    return None


def convert_onnx_bert_to_dir(onnx_path: Path | str, out_dir: Path | str,
                             bert_config: dict[str, Any]) -> None:
    """Write config.json + model.safetensors for a `BertModel` holding the ONNX weights.

    The state dict is loaded strictly into a model built from `bert_config` (the pooler is left out
    when the export has none), so a config that disagrees with the weights fails here, not later.
    """
    import torch
    from transformers import BertConfig, BertModel

    state = onnx_bert_state_dict(onnx_path)
    config = BertConfig(**bert_config)
    eps = layer_norm_eps(onnx_path)
    if eps is not None and not np.isclose(eps, config.layer_norm_eps, rtol=1e-3):
        raise ValueError(f"ONNX LayerNorm epsilon {eps} != config layer_norm_eps {config.layer_norm_eps}")
    has_pooler = any(k.startswith("pooler.") for k in state)
    model = BertModel(config, add_pooling_layer=has_pooler)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # position_ids / token_type_ids are buffers the export inlined as constants.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ValueError(f"ONNX weights do not fit the config: missing {missing}, unexpected {unexpected}")
    model.config.architectures = ["BertModel"]
    model.save_pretrained(str(out_dir), safe_serialization=True)
