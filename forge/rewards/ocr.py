"""Rewards for OCR pages: how many of a page's olmOCR-bench unit tests a completion passes.

A page's tests travel as JSON in a column of the RL rows (`forge.data.ocr.page_tests`; by default
`page_tests`, which page tasks fill: `task=olmocr_bench` with the page's JSONL rows, `task=ocr_synth`
with tests `forge.data.ocr.synth_tests` derives from each page's markdown). Each test is
olmocr's own object, run by olmocr's own code (`forge.eval.olmocr_checks.page_pass_rate`): the
reward is exactly the per-page number the benchmark's checks give. Parsed tests are cached per
distinct JSON string, since GRPO scores a group of completions of the same page together and math
tests render LaTeX in a browser when built.
"""

from __future__ import annotations

from typing import Any

from forge.config.errors import ConfigProblem
from forge.data.ocr.page_tests import load_page_tests
from forge.eval.olmocr_checks import page_pass_rate
from forge.rewards.base import Reward, RewardError


class OlmocrChecks(Reward):
    """The fraction of the page's olmOCR tests the completion passes, in [0, 1]."""

    def __init__(self, name: str = "olmocr_checks", column: str = "page_tests") -> None:
        super().__init__(name)
        self.column = column

    def check(self) -> list[ConfigProblem]:
        if not isinstance(self.column, str) or not self.column:
            return [self._problem("column", "must name the RL column holding each page's tests", self.column,
                                  f"set reward.{self.name}.column=page_tests")]
        return []

    def params(self) -> dict[str, Any]:
        return {"column": self.column}

    def score(self, completions: list[str], **columns: Any) -> list[float]:
        pages = self._column(columns, self.column, len(completions))
        rates = []
        for i, (completion, tests_json) in enumerate(zip(completions, pages)):
            try:
                tests = load_page_tests(str(tests_json))
            except ValueError as error:
                raise RewardError(f"reward '{self.name}': column '{self.column}' row {i} holds no page tests "
                                  f"({error}); this reward needs a task whose targets are olmOCR tests "
                                  "(task=olmocr_bench)") from None
            rates.append(page_pass_rate(tests, str(completion)))
        return rates
