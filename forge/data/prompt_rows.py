"""A prompt→completion task's prepared data as the rows an RL trainer samples from.

TRL's GRPOTrainer reads a `prompt` column and hands every other column to the reward functions.
Here `prompt` holds the prompt's token ids exactly as the task prepared them (chat template,
truncation and all), so the student samples from the same prompt it is evaluated on;
`reference` is the target text the text rewards compare against, and `teacher_prompt` the
teacher's own prompt under context baking; `page` a page task's page (PNG bytes), which the RL
trainer turns into the pixels that go with the prompt (`forge.trainers.rl_pages`), and
`page_tests` its olmOCR-style tests (JSON) for `reward=olmocr_checks`.
"""

from __future__ import annotations

from typing import Any

from forge.data.causal_collate import PROMPT, TARGET_TEXT, TEACHER_PROMPT
from forge.data.page_collate import IMAGE
from forge.data.pages import PAGE_TESTS
from forge.data.prompted import SOURCE_TEXT

#: the columns of an RL row (rewards read them by these names)
RL_PROMPT, RL_REFERENCE, RL_SOURCE, RL_TEACHER_PROMPT = "prompt", "reference", "source", "teacher_prompt"
#: a page task's page (not `image`: TRL would take that for an image of a chat prompt it renders)
RL_PAGE = "page"


def prompt_rows(prepared: Any) -> Any:
    """The RL rows of a prepared split (a `datasets.Dataset` from `PromptCompletionHandler.prepare`)."""
    renames = {PROMPT: RL_PROMPT, TARGET_TEXT: RL_REFERENCE, TEACHER_PROMPT: RL_TEACHER_PROMPT, IMAGE: RL_PAGE}
    keep = [c for c in prepared.column_names if c in renames or c in (SOURCE_TEXT, PAGE_TESTS)]
    rows = prepared.select_columns(keep)
    return rows.rename_columns({old: new for old, new in renames.items() if old in keep and old != new})


def has_prompts(prepared: Any) -> bool:
    """Whether a prepared split holds prompts to sample from (classification data does not)."""
    return PROMPT in getattr(prepared, "column_names", ())
