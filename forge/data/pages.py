"""Page image → markdown tasks for vision-language models (OCR, document AI).

A page task is a prompt → completion task (`forge.data.prompted`) whose input is an image: the
prompt template's `{image}` becomes Qwen-VL's image markup (`<|vision_start|><|image_pad|>
<|vision_end|>`), and `prepare` expands the pad into one token per merged patch of that page, as
the model's processor would, so the stored prompt ids are exactly what the model sees. The
completion is the page's markdown + EOS; its labels are the only ones not -100 (prompt, image and
padding tokens carry no loss), in CE and in every KD loss. Images travel as PNG bytes and become
`pixel_values` / `image_grid_thw` in the collator (`forge.data.page_collate`).

`max_pixels` / `min_pixels` bound the resized page (Qwen-VL resizes each page into that range,
keeping its aspect ratio): fewer pixels, fewer image tokens, faster steps. A family (`ocr_synth`,
`olmocr_bench`, `omnidocbench`) supplies `load_splits` -> `PagePairs` and its metrics.
"""

from __future__ import annotations

import copy
import logging
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from PIL import Image

from forge.config.errors import ConfigError, ConfigProblem, DataError
from forge.data.causal_collate import COMPLETION, PROMPT, TARGET_TEXT, TEACHER_PROMPT
from forge.data.page_collate import IMAGE, PageCollator, PageEvalCollator, encode_png
from forge.data.prompt_pairs import EncodedSplit
from forge.data.prompted import PromptCompletionHandler
from forge.models.vision_tokens import IMAGE_PAD, VISION_END, VISION_START

logger = logging.getLogger(__name__)

IMAGE_PLACEHOLDER = "{image}"
#: the column holding each page's olmOCR-style tests as JSON (read by reward=olmocr_checks)
PAGE_TESTS = "page_tests"
IMAGE_MARKUP = f"{VISION_START}{IMAGE_PAD}{VISION_END}"
DEFAULT_PAGE_PROMPT = "{image}Convert this page to markdown."

#: a page: an image, or a function that renders it when asked (PDF pages render lazily).
PageSource = Union[Image.Image, Callable[[], Image.Image]]


@dataclass
class PagePairs:
    """One raw split: page images (or their renderers) and their markdown."""

    pages: list[PageSource]
    targets: list[str]

    def __post_init__(self) -> None:
        if len(self.pages) != len(self.targets):
            raise ValueError("pages and targets must have the same length")

    def __len__(self) -> int:
        return len(self.pages)

    def subset(self, indices: Sequence[int]) -> "PagePairs":
        return PagePairs([self.pages[i] for i in indices], [self.targets[i] for i in indices])

    def image(self, i: int) -> Image.Image:
        """Page i as an image; a page that cannot be read or decoded is a DataError naming it."""
        page = self.pages[i]
        if isinstance(page, Image.Image):
            return page
        try:
            image = page()
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's decode errors are OSErrors (and a few others)
            raise DataError(f"page {i}: cannot read or decode its image: {exc}. Fix: replace or remove the file "
                            "(a truncated download?), or set task.data_dir to a folder with valid pages") from exc
        if image.width < 1 or image.height < 1:
            raise DataError(f"page {i}: its image is empty ({image.width}x{image.height} pixels)")
        return image


class PageToMarkdownHandler(PromptCompletionHandler):
    """Image → markdown for vision-language models; a family supplies splits and metrics.

    `prepare` takes the model's `PageProcessor` (tokenizer + image processor)."""

    model_kind = "vision_lm"
    #: whether the `target` column is markdown to train on. False for a family whose targets are
    #: something else (olmOCR-bench's pages carry unit tests as JSON): such a task evaluates or runs
    #: RL, and a mode that takes a loss on the completion must refuse it.
    has_training_targets: bool = True
    placeholder = IMAGE_PLACEHOLDER
    placeholder_holds = "the page image"
    default_prompt_example = DEFAULT_PAGE_PROMPT
    reads_images = True
    cache_refusal = ("its inputs are page images, and the cache fingerprints token ids only (the same "
                     "prompt ids can carry different pixels)")

    def __init__(self, name: str, prompt_template: str = DEFAULT_PAGE_PROMPT, min_pixels: int = 64 * 64,
                 max_pixels: int = 448 * 448, max_length: int = 512, max_new_tokens: int = 256,
                 teacher_max_pixels: Optional[int] = None, **common: Any) -> None:
        super().__init__(name=name, prompt_template=prompt_template, max_length=max_length,
                         max_new_tokens=max_new_tokens, **common)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.teacher_max_pixels = teacher_max_pixels
        self._teacher_image_processor: Any = None
        self._processor: Any = None
        self._page_messages: dict[str, list[dict[str, Any]]] = {}

    @abstractmethod
    def load_splits(self) -> dict[str, PagePairs]:
        """All raw splits, uncapped: "train" and "validation"."""

    def page_tests(self, pairs: PagePairs) -> Optional[list[str]]:
        """Each page's olmOCR-style unit tests as JSON (`forge.data.ocr.page_tests`), for the
        `page_tests` column that `reward=olmocr_checks` reads; None: the family has none."""
        return None

    def validate(self) -> list[ConfigProblem]:
        problems = super().validate()
        if self.max_pixels < self.min_pixels:
            problems.append(ConfigProblem(key="task.max_pixels", value=self.max_pixels,
                                          message=f"is below task.min_pixels={self.min_pixels}",
                                          fix="raise task.max_pixels (448*448=200704 is the default)"))
        return problems

    def check_patching(self, patch_size: int, merge_size: int) -> list[ConfigProblem]:
        """A page must hold at least one merged patch; the model's processor gives the sizes."""
        window = patch_size * merge_size
        if self.max_pixels >= window * window:
            return []
        return [ConfigProblem(
            key="task.max_pixels", value=self.max_pixels,
            message=(f"is smaller than one merged patch of the model ({patch_size}-pixel patches merged "
                     f"{merge_size}x{merge_size}: {window}x{window} = {window * window} pixels)"),
            fix=f"set task.max_pixels to at least {window * window} (e.g. 448*448 = 200704)")]

    def postprocess(self, generated: str) -> str:
        """A page's markdown is many lines: keep them all, stripped."""
        return generated.strip()

    # ---- prepare ------------------------------------------------------------------------------

    def _start(self, processor: Any) -> int:
        """Keep the processor (its image processor counts image tokens and builds pixels), bound
        its resizing to this task's pixel range, and start as a text task on its tokenizer."""
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is None:
            raise ConfigError(ConfigProblem(
                key="model.student", value=type(processor).__name__,
                message=f"task {self.name!r} reads page images, but the model has no image processor "
                        "(a text-only model)",
                fix="use a vision-language model: model=tiny_vlm (offline) or model=qwen3vl"))
        problems = self.check_patching(int(image_processor.patch_size), int(image_processor.merge_size))
        if problems:
            raise ConfigError(problems)
        image_processor.size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        self._teacher_image_processor = None
        if self.teacher_max_pixels is not None:  # the teacher's own view: the same page at its own resolution
            self._teacher_image_processor = copy.deepcopy(image_processor)
            self._teacher_image_processor.size = {"shortest_edge": self.min_pixels,
                                                  "longest_edge": self.teacher_max_pixels}
        self._processor = processor
        return super()._start(processor.tokenizer)

    def _collators(self, processor: Any) -> tuple[Any, Any]:
        teacher, messages = self._teacher_image_processor, self._page_messages
        return (PageCollator.for_processor(processor, teacher, messages),
                PageEvalCollator.for_processor(processor, teacher, messages))

    def page_messages(self, context: Optional[str] = None) -> list[dict[str, Any]]:
        """The prompt as OpenAI-style chat messages with the page as an `{"type": "image"}` part where
        the template puts it: what a chat server that reads images is sent (the backend fills in the
        page). The same prompt the model's chat template renders into token ids."""
        before, _, after = self.prompt_template.partition(self.placeholder)
        parts: list[dict[str, Any]] = [{"type": "text", "text": before}] if before else []
        parts.append({"type": "image"})
        if after:
            parts.append({"type": "text", "text": after})
        return self.chat_messages(parts, context)

    @property
    def teacher_view(self) -> Optional[str]:
        """What the teacher sees of a page that the student does not (None: the same page)."""
        return None if self.teacher_max_pixels is None else f"the page at {self.teacher_max_pixels} pixels"

    def _image_tokens(self, image: Image.Image, teacher: bool = False) -> int:
        """Prompt tokens of one page: its patch count after the processor's resize (computed from
        the size alone, as the processor does; the pixels are made once, by the collator) over
        the merge window."""
        image_processor = self._teacher_image_processor if teacher else self._processor.image_processor
        patches = image_processor.get_number_of_image_patches(image.height, image.width)
        return patches // int(image_processor.merge_size) ** 2

    def _expanded_ids(self, prompt: str, image_tokens: int) -> list[int]:
        text = prompt.replace(IMAGE_PAD, IMAGE_PAD * image_tokens)
        return self._encode_prompts([text], self._tokenizer)[0]

    def _split_columns(self, pairs: PagePairs, tokenizer: Any, eos: int,
                       teacher_context: Optional[str]) -> tuple[dict[str, list], EncodedSplit]:
        """PNG bytes, the expanded prompt (and teacher prompt), the markdown completion (+EOS; cut,
        without EOS, when prompt + completion exceed max_length)."""
        prompt = self.render_prompt(IMAGE_MARKUP, tokenizer)
        own_view = teacher_context is not None or self._teacher_image_processor is not None
        teacher_prompt = self.render_prompt(IMAGE_MARKUP, tokenizer, teacher_context) if own_view else None
        self._page_messages = {"prompt": self.page_messages()}  # by prompt: `forge.decoding.vision`'s names
        if own_view:
            self._page_messages["teacher_prompt"] = self.page_messages(teacher_context)
        targets = [self.completion_text(prompt, t) for t in pairs.targets]
        if self.has_training_targets:
            completion_ids = [list(ids) + [eos] for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]]
        else:  # the targets are not text to learn (a benchmark's tests): nothing to tokenise or cut
            completion_ids = [[eos] for _ in targets]
        enc = EncodedSplit([prompt] * len(pairs), [], completion_ids, [IMAGE_MARKUP] * len(pairs))
        columns: dict[str, list] = {TARGET_TEXT: list(pairs.targets), IMAGE: [], PROMPT: enc.prompt_ids,
                                    COMPLETION: completion_ids}
        tests = self.page_tests(pairs)
        if tests is not None:
            columns[PAGE_TESTS] = tests
        if teacher_prompt is not None:
            columns[TEACHER_PROMPT] = []
            enc.teacher_prompts = [teacher_prompt] * len(pairs)
        for i in range(len(pairs)):
            image = pairs.image(i)
            n = self._image_tokens(image)
            columns[IMAGE].append(encode_png(image))
            enc.prompt_ids.append(self._expanded_ids(prompt, n))
            if teacher_prompt is not None:
                n_teacher = n if self._teacher_image_processor is None else self._image_tokens(image, teacher=True)
                columns[TEACHER_PROMPT].append(self._expanded_ids(teacher_prompt, n_teacher))
            self._fit(enc, i)
        return columns, enc

    def _fit(self, enc: EncodedSplit, i: int) -> None:
        room = self.max_length - len(enc.prompt_ids[i])
        if room < 1:
            raise ConfigError(ConfigProblem(
                key="task.max_length", value=self.max_length,
                message=f"page {i}'s prompt alone takes {len(enc.prompt_ids[i])} tokens (most of them "
                        "image tokens), leaving no room for its markdown",
                fix=f"raise task.max_length above {len(enc.prompt_ids[i]) + 64}, or lower task.max_pixels "
                    f"(now {self.max_pixels}: about one token per 32x32 pixels)"))
        if len(enc.completion_ids[i]) > room:
            enc.completion_ids[i] = enc.completion_ids[i][:room]
            enc.overflowed += 1
            enc.truncated_target += 1
