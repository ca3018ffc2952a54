"""LoRA via peft, and saving a final model that loads without peft.

Why: OmegaConf containers must not reach peft (a ListConfig in LoraConfig.target_modules breaks
save_pretrained), a target module that matches nothing should fail with the names that exist rather
than silently training nothing, and the final model of a run must be a plain PreTrainedModel (LoRA
merged: `merged_for_saving`, used by `forge.models.recipe.save_final`) so
`AutoModel*.from_pretrained(final/)` works with no adapter files and no peft.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterable, Mapping

from torch import nn

# Freshly initialised task heads: trained in full next to the LoRA adapters.
_HEAD_NAMES = ("pre_classifier", "classifier", "score")


def _plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def adaptable_module_names(model: nn.Module) -> list[str]:
    """Leaf names of the modules LoRA can wrap (Linear, Embedding, Conv*, GPT-2's Conv1D)."""
    names = set()
    for name, module in model.named_modules():
        if not name:
            continue
        if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)) or \
                type(module).__name__ == "Conv1D":
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def check_target_modules(model: nn.Module, targets: Iterable[str]) -> None:
    """Raise naming every target that matches no module (peft's rule: equal, or a '.'-suffix)."""
    module_names = [name for name, _ in model.named_modules() if name]
    missing = [t for t in targets
               if not any(n == t or n.endswith("." + t) for n in module_names)]
    if missing:
        raise ValueError(
            f"lora.target_modules {missing} match no module of {type(model).__name__}; "
            f"modules LoRA can wrap: {adaptable_module_names(model)}"
        )


def apply_lora(model: Any, lora_spec: Mapping[str, Any] | Any, task_type: Any = None, *,
               kind: str | None = None) -> Any:
    """Wrap `model` with LoRA adapters; returns it unchanged when `lora_spec.enabled` is false.

    task_type: "SEQ_CLS" / "CAUSAL_LM" (peft names, or peft.TaskType) or a Forge kind
    ("classification", "causal_lm"); `kind=` is accepted as the same thing. For SEQ_CLS the task head (classifier / score, DistilBERT's pre_classifier) goes to
    modules_to_save, as does any module the checkpoint lacked (e.g. the pooler of the converted
    ONNX model): those are newly initialised, so freezing them would leave random weights.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    if dataclasses.is_dataclass(lora_spec) and not isinstance(lora_spec, type):
        lora_spec = dataclasses.asdict(lora_spec)
    spec = dict(_plain(lora_spec) or {})
    if not spec.get("enabled", False):
        return model
    if task_type is None:
        if kind is None:
            raise TypeError("apply_lora needs task_type (or kind)")
        task_type = kind
    from forge.models.kinds import MODEL_KINDS

    task = str(getattr(task_type, "value", task_type))
    task = MODEL_KINDS[task].peft_task if task in MODEL_KINDS else task
    targets = _plain(spec.get("target_modules") or [])
    if isinstance(targets, str):
        target_modules: Any = targets  # a regex or "all-linear": peft checks it
    else:
        target_modules = [str(t) for t in targets]
        check_target_modules(model, target_modules)
    modules_to_save = _modules_to_save(model, task, _plain(spec.get("modules_to_save")) or [])
    config = LoraConfig(
        r=int(spec.get("r", 8)),
        lora_alpha=spec.get("alpha", 16),
        lora_dropout=float(spec.get("dropout", 0.0)),
        target_modules=target_modules,
        modules_to_save=modules_to_save or None,
        # A module trained in full must not also get an adapter.
        exclude_modules=[m for m in modules_to_save if "." in m] or None,
        task_type=TaskType(task),
    )
    return get_peft_model(model, config)


def _modules_to_save(model: nn.Module, task: str, explicit: Iterable[str]) -> list[str]:
    """Modules trained in full: those asked for, the task head for SEQ_CLS, and every module whose
    weights the checkpoint lacked (recorded by load_model as `forge_new_modules`, full names)."""
    chosen = [str(m) for m in explicit]
    names = {name for name, _ in model.named_modules() if name}
    if task == "SEQ_CLS":
        for head in _HEAD_NAMES:
            if any(n == head or n.endswith("." + head) for n in names):
                chosen.append(head)
    for name in getattr(model, "forge_new_modules", ()) or ():
        leaf = name.rsplit(".", 1)[-1]
        if name in names and name not in chosen and leaf not in chosen:
            chosen.append(name)
    return list(dict.fromkeys(chosen))


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def merged_for_saving(model: Any, *, inplace: bool = False) -> Any:
    """A plain PreTrainedModel with LoRA merged into the base weights (and trained heads in place).

    By default the peft model is copied first, so the caller can keep training or evaluating the
    adapter model afterwards; `inplace=True` saves the memory of that copy at the end of a run.
    """
    if not is_peft_model(model):
        return model
    target = model if inplace else copy.deepcopy(model)
    return target.merge_and_unload()
