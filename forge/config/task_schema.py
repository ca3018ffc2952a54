"""Schemas of the `task` group: the keys every task has, and each task family's own.

Every key is a constructor argument of the task's handler (`instantiate(cfg.task)`), so a field
here and a handler's `__init__` keyword are the same thing; numeric fields declare their ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import MISSING

from forge.config.ranges import at_least, in_range, seed_field


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
class PerplexityConfig:
    """task.perplexity (enabled=true): the model's perplexity on the held-out split's `side` (source | target), read in
    order as one running text, in windows of `window` tokens advancing by `stride`; the text is cut
    to its first `max_tokens` tokens (null: all). Reported as `<eval set>/perplexity`."""

    enabled: bool = False
    side: str = "target"
    window: int = at_least(2, default=512)
    stride: int = at_least(1, default=256)
    max_tokens: Optional[int] = at_least(2, default=20000)


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
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)


@dataclass
class PageTaskConfig(TaskConfig):
    """Page image → markdown with a vision-language model (`forge.data.pages`).

    prompt_template: `{image}` is where the page goes (Qwen-VL's image markup).
    min_pixels / max_pixels: the range each page is resized into, keeping its aspect ratio (about
      one prompt token per 32x32 pixels: fewer pixels, shorter prompts, faster steps).
    max_length: prompt (image tokens included) + markdown tokens; the markdown is cut when longer.
    max_new_tokens / num_beams: eval generation.
    teacher_max_pixels: the teacher's own view of each page, at this many pixels (e.g. a higher
      resolution than the student's); null: the student's view. Read by mode=gkd.
    """

    prompt_template: str = "{image}Convert this page to markdown."
    chat_template: str = "auto"
    system_prompt: Optional[str] = None
    min_pixels: int = at_least(1, default=64 * 64)
    max_pixels: int = at_least(1, default=448 * 448)
    max_length: int = at_least(1, default=512)
    max_new_tokens: int = at_least(1, default=256)
    num_beams: int = at_least(1, default=1)
    teacher_max_pixels: Optional[int] = at_least(1, default=None)


@dataclass
class OcrSynthTaskConfig(PageTaskConfig):
    """Synthetic pages: num_train / num_validation pages drawn from `data_seed` (not the run's seed:
    every run of a study sees the same pages); `page` holds `forge.data.ocr.synth.SynthConfig`
    fields (width, height, font_size, blocks, noise...), checked by the handler."""

    num_train: int = at_least(1, default=256)
    num_validation: int = at_least(1, default=32)
    data_seed: int = seed_field(default=0)
    page: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OlmocrBenchTaskConfig(PageTaskConfig):
    """olmOCR-bench pages, scored by olmocr's unit tests (`forge.data.olmocr_bench_task`): no markdown
    to train on, so a run evaluates or runs RL. data_dir: a bench folder (*.jsonl beside pdfs/);
    null downloads the release (`hub_repo` at `hub_revision`, its bench_data/) into the HF cache.
    baseline: keep olmocr's automatic baseline test on every PDF, as the benchmark script does.
    Pages render at max_pixels; real pages need far more pixels than synthetic ones."""

    hub_repo: str = "allenai/olmOCR-bench"
    hub_revision: Optional[str] = None
    baseline: bool = True
    max_pixels: int = at_least(1, default=1024 * 1024)
    max_length: int = at_least(1, default=4096)
    max_new_tokens: int = at_least(1, default=2048)


@dataclass
class OmniDocBenchTaskConfig(PageTaskConfig):
    """OmniDocBench pages → their annotated markdown (`forge.data.omnidocbench_task`).

    data_dir: a folder with the annotation JSON beside images/ (the demo's omnidocbench_demo/);
      null downloads `hub_repo` at `hub_revision` (OmniDocBench.json and images/) into the HF cache.
    annotations: the JSON's file name in data_dir; null: the only *.json there (OmniDocBench.json
      on the hub).
    validation_fraction / split_seed: a page is a validation page when a seeded hash of its image
      name falls below the fraction: the same pages on every machine, whatever the file order.
    table_format: html | latex, how tables appear in the markdown; figures: keep figure links
      (`![](./imgs/...)`, whose names no model can read off the pixels).
    """

    hub_repo: str = "opendatalab/OmniDocBench"
    hub_revision: Optional[str] = None
    annotations: Optional[str] = None
    validation_fraction: float = in_range(0.0, 1.0, low_open=True, high_open=True, default=0.2)
    split_seed: int = seed_field(default=0)
    table_format: str = "html"
    figures: bool = False
    max_pixels: int = at_least(1, default=1024 * 1024)
    max_length: int = at_least(1, default=4096)
    max_new_tokens: int = at_least(1, default=2048)
