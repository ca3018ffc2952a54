"""Schemas of the `task` group: the keys every task has, and each task family's own.

Every key is a constructor argument of the task's handler (`instantiate(cfg.task)`), so a field
here and a handler's `__init__` keyword are the same thing; numeric fields declare their ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from forge.config.ranges import at_least, seed_field


@dataclass
class TaskConfig:
    """Fields every task has; handlers add their own (a GLUE task's `glue_task`, a prompt...).

    Every key here is a constructor argument of the handler (`instantiate(cfg.task)`).
    data_dir: null loads from the hub (or the packaged copy for `demo`); a path reads local files.
    max_train_samples / max_eval_samples: cap each split with a random subset drawn with `seed`
      (deterministic per seed); null keeps everything.
    seed: the base task yaml sets `${seed}`, so one top-level seed fixes the subsets too.
    """

    _target_: str = MISSING
    name: str = MISSING
    data_dir: Optional[str] = None
    max_train_samples: Optional[int] = at_least(1, default=None)
    max_eval_samples: Optional[int] = at_least(1, default=None)
    max_length: int = at_least(1, default=128)
    seed: int = seed_field(default=42)


@dataclass
class GlueTaskConfig(TaskConfig):
    """glue_task: sst2 | cola | mnli | qqp (checked by the handler's validate(), which lists them).
    hub_dataset: the hub id used when data_dir is null."""

    glue_task: str = MISSING
    hub_dataset: str = "nyu-mll/glue"


@dataclass
class TranslationTaskConfig(TaskConfig):
    """Translation with a decoder-only LM (prompt → target; loss on target tokens only).

    hub_dataset / hub_config: used when data_dir is null. train_file / eval_file: file names inside
      data_dir (TSV with `<source_lang>` and `<target_lang>` columns, plain or gzipped); null finds
      them (`*train*` and `*heldout*|*dev*|*valid*|*test*`).
    prompt_template: `{source}` is replaced by the source sentence.
    chat_template: auto (use the tokenizer's chat template when it has one) | always | never.
    system_prompt: the chat system message (null: the template's own default, if any).
    max_length: prompt + target tokens kept; max_new_tokens / num_beams: eval generation.
    """

    hub_dataset: str = "Helsinki-NLP/europarl"
    hub_config: str = "en-fr"
    source_lang: str = "en"
    target_lang: str = "fr"
    train_file: Optional[str] = None
    eval_file: Optional[str] = None
    prompt_template: str = "Translate the following English text to French.\nEnglish: {source}\nFrench:"
    chat_template: str = "auto"
    system_prompt: Optional[str] = None
    max_length: int = at_least(1, default=256)
    max_new_tokens: int = at_least(1, default=96)
    num_beams: int = at_least(1, default=1)


@dataclass
class PageTaskConfig(TaskConfig):
    """Page image → markdown with a vision-language model (`forge.data.pages`).

    prompt_template: `{image}` is where the page goes (Qwen-VL's image markup).
    min_pixels / max_pixels: the range each page is resized into, keeping its aspect ratio (about
      one prompt token per 32x32 pixels: fewer pixels, shorter prompts, faster steps).
    max_length: prompt (image tokens included) + markdown tokens; the markdown is cut when longer.
    max_new_tokens / num_beams: eval generation.
    """

    prompt_template: str = "{image}Convert this page to markdown."
    chat_template: str = "auto"
    system_prompt: Optional[str] = None
    min_pixels: int = at_least(1, default=64 * 64)
    max_pixels: int = at_least(1, default=448 * 448)
    max_length: int = at_least(1, default=512)
    max_new_tokens: int = at_least(1, default=256)
    num_beams: int = at_least(1, default=1)


@dataclass
class OcrSynthTaskConfig(PageTaskConfig):
    """Synthetic pages: num_train / num_validation pages drawn from `data_seed` (not the run's seed:
    every run of a study sees the same pages); `page` holds `forge.data.ocr.synth.SynthConfig`
    fields (width, height, font_size, blocks, noise...), checked by the handler."""

    num_train: int = at_least(1, default=256)
    num_validation: int = at_least(1, default=32)
    data_seed: int = seed_field(default=0)
    page: Dict[str, Any] = field(default_factory=dict)
