"""`task=ocr_synth`: synthetic pages (Synthmix) → markdown, the offline OCR task.

Pages come from `forge.data.ocr.synth` (Pillow-rendered headings, paragraphs, lists, tables, inline
math and two-column passages, with optional blur / rotation / speckle / JPEG noise); the markdown
is exactly what each page shows. The data is a pure function of `data_seed` and `task.page`, NOT of
the run's `seed`: every run of a study trains and is scored on the same pages, so seeds vary only
the training. Validation pages come from their own seed stream, disjoint from training's.
Scored with edit similarity (primary) and exact match (`forge.eval.ocr_metrics`, rapidfuzz), and
`pass_rate`: the olmOCR-style unit tests `forge.data.ocr.synth_tests` derives from each page's
markdown (present / absent / order / table / baseline), run by olmocr's own checks. The same tests
fill the `page_tests` column, so `reward=olmocr_checks` works on synthetic pages too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from forge.config.errors import ConfigProblem
from forge.data.pages import PagePairs, PageToMarkdownHandler
from forge.data.prompted import EVAL_SET
from forge.eval.ocr_metrics import ocr_metrics


def _synth() -> Any:
    from forge.data.ocr import synth

    return synth


class OcrSynthHandler(PageToMarkdownHandler):
    """num_train / num_validation pages rendered from `data_seed` with the `page` settings
    (any `SynthConfig` field: width, height, font_size, blocks, noise...)."""

    primary_metric = "edit_similarity"
    greater_is_better = True
    metric_names: tuple[str, ...] = ("edit_similarity", "exact_match", "pass_rate")

    def __init__(self, name: str, num_train: int = 256, num_validation: int = 32, data_seed: int = 0,
                 page: Optional[Mapping[str, Any]] = None, **common: Any) -> None:
        super().__init__(name=name, **common)
        self.num_train = num_train
        self.num_validation = num_validation
        self.data_seed = data_seed
        self.page = dict(page or {})

    def source(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.page.items()))
        return f"ocr_synth(data_seed={self.data_seed}{', ' + settings if settings else ''})"

    def synth_config(self) -> Any:
        return _synth().SynthConfig(**self.page)

    def validate(self) -> list[ConfigProblem]:
        """Unknown page keys (with the valid ones), then every bad value of the known ones."""
        problems = super().validate()
        known = [f.name for f in dataclasses.fields(_synth().SynthConfig)]
        unknown = sorted(set(self.page) - set(known))
        problems += [ConfigProblem(key=f"task.page.{k}", value=self.page[k], message="is not a page setting",
                                   fix=f"use one of: {', '.join(known)}") for k in unknown]
        config = _synth().SynthConfig(**{k: v for k, v in self.page.items() if k in known})
        return problems + [dataclasses.replace(p, key=p.key.replace("task.", "task.page.", 1))
                           for p in config.validate()]

    def load_splits(self) -> dict[str, PagePairs]:
        synth = _synth()
        config = self.synth_config()
        splits = {"train": (self.data_seed, self.num_train),
                  EVAL_SET: (synth.derive_seed(self.data_seed, "validation"), self.num_validation)}
        out = {}
        for split, (base_seed, n) in splits.items():
            pages = synth.synth_split(config, base_seed, n)
            rendered = [pages[i] for i in range(n)]
            out[split] = PagePairs([p.image for p in rendered], [p.markdown for p in rendered])
        return out

    def page_tests(self, pairs: PagePairs) -> list[str]:
        from forge.data.ocr.synth_tests import synth_tests_for_pages

        return synth_tests_for_pages(pairs.targets, self.data_seed)

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        from forge.data.ocr.synth_tests import synth_tests_for_pages
        from forge.eval.olmocr_metrics import PASS_RATE, pass_rate_metrics

        scores = ocr_metrics(predictions, references, which=("edit_similarity", "exact_match"))
        tests = synth_tests_for_pages([str(r) for r in references], self.data_seed)
        return {**scores, "pass_rate": pass_rate_metrics(predictions, tests)[PASS_RATE]}
