"""Trainer arguments from the `trainer` config node (the stable `trainer.*` override names).

The arguments class is the mode's (`Mode.args_class`): `transformers.TrainingArguments` or a
subclass such as TRL's `GRPOConfig`, which gets the same `trainer.*` fields plus the mode's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import TrainingArguments

# Keys of `cfg.trainer` that Forge handles itself rather than handing to TrainingArguments.
FORGE_ONLY_KEYS = ("save_total_limit", "eval_steps")


def keep_last_checkpoints(trainer_cfg: DictConfig | dict) -> Optional[int]:
    """`trainer.save_total_limit`: Forge rotates checkpoints itself (never deleting the only complete one)."""
    value = trainer_cfg.get("save_total_limit")
    return int(value) if value else None


def distributed_arguments(distributed: Any) -> dict[str, Any]:
    """TrainingArguments fields for `cfg.distributed` (a no-op for one process): DDP's flag, or
    FSDP2 with its config (an empty `transformer_layer_cls_to_wrap` lets transformers use the
    model's own `_no_split_modules`)."""
    if distributed is None:
        return {}
    values = OmegaConf.to_container(distributed, resolve=True, enum_to_str=True) \
        if isinstance(distributed, DictConfig) else dict(distributed)
    if values.get("strategy") == "fsdp":
        fsdp_config = dict(values.get("fsdp_config") or {})
        if not fsdp_config.get("transformer_layer_cls_to_wrap"):
            fsdp_config.pop("transformer_layer_cls_to_wrap", None)
        return {"fsdp": True, "fsdp_config": fsdp_config}
    return {"ddp_find_unused_parameters": bool(values.get("find_unused_parameters", False))}


def _field_default(args_class: type, name: str) -> Any:
    import dataclasses

    found = [f.default for f in dataclasses.fields(args_class) if f.name == name]
    return found[0] if found else None


def training_arguments(trainer_cfg: DictConfig | dict, *, output_dir: Path, seed: int,
                       args_class: type = TrainingArguments, **overrides: Any) -> TrainingArguments:
    """Map `cfg.trainer` onto `args_class` (TrainingArguments or a subclass) with Forge's fixed choices.

    Fixed: evaluation only through Forge's own eval loop (at `trainer.eval_steps`, 0 = never during
    training), no reporting integrations (Forge's tracker logs), columns kept as the collator made
    them, `labels` as the label key, Trainer's own checkpoint rotation off (Forge's is atomic), and
    callback state (the peak-metric tracker) restored on resume. Precision and gradient
    checkpointing are always set from `trainer.*`: TRL's configs default both on, even on a CPU.
    """
    values = OmegaConf.to_container(trainer_cfg, resolve=True) if isinstance(trainer_cfg, DictConfig) else dict(trainer_cfg)
    values.update(overrides)
    eval_steps = int(values.get("eval_steps") or 0)
    for key in FORGE_ONLY_KEYS:
        values.pop(key, None)
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio of total steps).
    ratio = values.pop("warmup_ratio", 0.0) or 0.0
    if ratio and not values.get("warmup_steps"):
        values["warmup_steps"] = float(ratio)
    if _field_default(args_class, "gradient_checkpointing"):  # TRL's configs: on, even on a CPU
        values.setdefault("gradient_checkpointing", False)
    return args_class(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        eval_strategy="steps" if eval_steps > 0 else "no",
        eval_steps=eval_steps if eval_steps > 0 else None,
        save_strategy="steps" if values.get("save_steps", 0) > 0 else "no",
        save_total_limit=None,
        restore_callback_states_from_checkpoint=True,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_first_step=True,
        **values,
    )
