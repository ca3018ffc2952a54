"""Tesseract's row in an OCR benchmark: OCR every page, score it like the models are scored.

Why a function of its own: a benchmark that puts Tesseract beside the trained models must score it
with the same metric code (`forge.eval.ocr_metrics`) on the same pages, and should say what a page
costs; this keeps that in one call instead of a loop in every benchmark script.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from PIL import Image

from forge.eval.ocr_metrics import ocr_metrics
from forge.ocr.tesseract import DEFAULT_PSM, DEFAULT_SCALE, check_tesseract, tesseract_markdown

DEFAULT_METRICS = ("edit_similarity", "exact_match", "normalized_edit_distance")


@dataclass(frozen=True)
class BaselineScore:
    """metrics: `ocr_metrics` over the pages; ms_per_page: mean OCR wall time per page (scoring not
    counted); predictions: Tesseract's text per page, in order; engine: the tesseract version."""

    metrics: dict[str, float]
    ms_per_page: float
    pages: int
    engine: str
    predictions: list[str] = field(repr=False, default_factory=list)

    def row(self, name: str = "tesseract") -> dict[str, Any]:
        """One flat row for a results table: name, the metrics, ms/page and the page count."""
        return {"system": name, **{k: round(v, 4) for k, v in self.metrics.items()},
                "ms_per_page": round(self.ms_per_page, 1), "pages": self.pages}


def tesseract_baseline(pages: Iterable[tuple[Image.Image, str]], *, lang: str = "eng", psm: int = DEFAULT_PSM,
                       scale: float = DEFAULT_SCALE, keep_lines: bool = False,
                       which: Sequence[str] = DEFAULT_METRICS) -> BaselineScore:
    """OCR each (page image, reference markdown) pair with `tesseract_markdown` (its settings: lang,
    psm, scale, keep_lines) and score the texts with `ocr_metrics(..., which)`.

    Raises TesseractUnavailable (what to install) before the first page when tesseract or `lang` is
    missing, and ValueError when `pages` is empty.
    """
    engine = check_tesseract(lang)
    predictions: list[str] = []
    references: list[str] = []
    elapsed = 0.0
    for image, reference in pages:
        start = time.perf_counter()
        predictions.append(tesseract_markdown(image, lang, psm, scale=scale, keep_lines=keep_lines))
        elapsed += time.perf_counter() - start
        references.append(reference)
    if not predictions:
        raise ValueError("tesseract_baseline got no pages: pass (image, markdown) pairs")
    return BaselineScore(metrics=ocr_metrics(predictions, references, which=which),
                         ms_per_page=1000.0 * elapsed / len(predictions), pages=len(predictions),
                         engine=f"tesseract {engine}", predictions=predictions)


__all__ = ["BaselineScore", "DEFAULT_METRICS", "tesseract_baseline"]
