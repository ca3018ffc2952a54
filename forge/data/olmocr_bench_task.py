"""`task=olmocr_bench`: olmOCR-bench PDF pages → markdown, scored by olmocr's own unit tests.

A page's answer is not a markdown to imitate but a set of pass/fail checks (text present, text
absent, reading order, table cells, math, baseline sanity). So the `target` column holds the page's
tests as JSON (`forge.data.ocr.page_tests`: the JSONL rows themselves), which the eval loop hands
to `compute_metrics` as references and the RL rows hand to `reward=olmocr_checks` as `reference`.
There is no markdown to train on (`has_training_targets = False`): a run on this task evaluates,
or optimises the pass rate with RL. Both "train" and "validation" are therefore the same pages.

Pages render lazily with pypdfium2 at `task.max_pixels` (the most a Qwen-VL processor would keep),
so no pixel is rendered only to be resized away. `task.data_dir` is a bench folder (`*.jsonl`
beside `pdfs/`, e.g. `../shared/data/ocr/olmocr-bench/sample_data`); null downloads the release
(`allenai/olmOCR-bench`, its `bench_data/`) into the Hugging Face cache.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any, Optional

from forge.config.errors import ConfigError, ConfigProblem
from forge.data.ocr.olmocr_bench import HUB_REPO_ID, BenchPage, download_olmocr_bench, load_olmocr_bench
from forge.data.ocr.page_tests import bench_page_json
from forge.data.pages import PagePairs, PageToMarkdownHandler
from forge.data.prompted import EVAL_SET
from forge.eval.olmocr_metrics import PASS_RATE, pass_rate_metrics, pass_rate_names

#: The loader's key for the folder itself; a task reports it as the config key that names it.
_LOADER_DIR_KEY = "olmocr_bench.dir"


class OlmocrBenchHandler(PageToMarkdownHandler):
    """Every tested page of a bench folder (or the hub release); metrics are olmocr pass rates."""

    has_training_targets = False
    primary_metric = PASS_RATE
    greater_is_better = True
    metric_names: tuple[str, ...] = pass_rate_names()

    def __init__(self, name: str, hub_repo: str = HUB_REPO_ID, hub_revision: Optional[str] = None,
                 baseline: bool = True, **common: Any) -> None:
        super().__init__(name=name, **common)
        self.hub_repo = hub_repo
        self.hub_revision = hub_revision
        self.baseline = baseline
        self._pages: Optional[list[BenchPage]] = None

    def source(self) -> str:
        if self.data_dir is not None:
            return f"olmocr_bench({self.data_dir})"
        return f"hub:{self.hub_repo}@{self.hub_revision or 'main'}"

    def bench_dir(self) -> Path:
        """The local folder, or the hub release's bench folder (downloaded into the HF cache)."""
        if self.data_dir is not None:
            return Path(self.data_dir).expanduser()
        return download_olmocr_bench(self.hub_repo, revision=self.hub_revision)

    def bench_pages(self) -> list[BenchPage]:
        """Every tested page, loaded once (building math tests renders LaTeX in a browser)."""
        if self._pages is None:
            self._pages = load_olmocr_bench(self.bench_dir(), baseline=self.baseline)
        return self._pages

    def validate(self) -> list[ConfigProblem]:
        """A local folder must load: every problem of its rows and PDFs, keyed by file (and line),
        the folder itself keyed `task.data_dir`. The hub release is checked when downloaded."""
        problems = super().validate()
        if self.data_dir is None:
            return problems
        try:
            self.bench_pages()
        except ConfigError as error:
            problems += [_as_task_problem(p, self.data_dir) for p in error.problems]
        return problems

    def load_splits(self) -> dict[str, PagePairs]:
        pages = self.bench_pages()
        renderers = [partial(page.render, longest_side=None, max_pixels=self.max_pixels) for page in pages]
        pairs = PagePairs(renderers, [bench_page_json(page) for page in pages])
        return {"train": pairs, EVAL_SET: pairs}

    def page_tests(self, pairs: PagePairs) -> list[str]:
        """The bench's own tests: the targets themselves."""
        return list(pairs.targets)

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return pass_rate_metrics(predictions, references)


def _as_task_problem(problem: ConfigProblem, data_dir: str) -> ConfigProblem:
    """The loader's problem with the folder itself, renamed to the key the user set."""
    if problem.key != _LOADER_DIR_KEY:
        return problem
    fix = problem.fix + "; or set task.data_dir=null to download the release from the hub"
    return dataclasses.replace(problem, key="task.data_dir", value=data_dir, fix=fix)
