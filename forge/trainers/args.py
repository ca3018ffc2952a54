"""TrainingArguments from the `trainer` config node (the stable `trainer.*` override names)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import TrainingArguments


def training_arguments(trainer_cfg: DictConfig | dict, *, output_dir: Path, seed: int, **overrides: Any) -> TrainingArguments:
    """Map `cfg.trainer` onto TrainingArguments with Forge's fixed choices.

    Fixed: no Trainer-side evaluation (Forge runs its own eval loop), no reporting integrations
    (Forge logs itself), columns kept as the collator made them, and `labels` as the label key.
    """
    values = OmegaConf.to_container(trainer_cfg, resolve=True) if isinstance(trainer_cfg, DictConfig) else dict(trainer_cfg)
    values.update(overrides)
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio of total steps).
    ratio = values.pop("warmup_ratio", 0.0) or 0.0
    if ratio and not values.get("warmup_steps"):
        values["warmup_steps"] = float(ratio)
    return TrainingArguments(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        eval_strategy="no",
        save_strategy="steps" if values.get("save_steps", 0) > 0 else "no",
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        logging_first_step=True,
        **values,
    )
