"""Tesseract as a teacher that only generates (`teacher_backend=tesseract`).

Why a teacher that gives no probabilities: for OCR, a classical engine's reading of a page is a
label that costs half a second and no weights, so it can stand in for a model teacher where only
completions are needed (sequence-level distillation, pseudo-labels for pages without ground truth).
It gives nothing token-level (no logits, no top-k, no hidden states), and declares so
(`Capabilities(generate=True)`): every loss that reads the teacher's distribution or features is
refused when the config is checked.

`generate` reads the page images it is given (one per prompt row; the prompt's tokens are ignored:
Tesseract follows no instruction) and tokenizes each page's text with the student's tokenizer, the
one `check_tokenizer` hands over at start. The text is Tesseract's plain text laid out as
paragraphs (`forge.ocr.tesseract`), not markdown. Greedy by nature: temperature and sampling do not
apply, and the same page always gives the same ids.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import torch

from forge.losses.divergence import TopKView
from forge.ocr.tesseract import DEFAULT_PSM, DEFAULT_SCALE, check_tesseract, tesseract_markdown
from forge.teachers.backends.base import Capabilities, ScoreRequest, TeacherBackend, TeacherBackendError
from forge.teachers.backends.completion_ids import completion_row, first_eos, pad_id, right_padded


class TesseractBackend(TeacherBackend):
    """Page text from Tesseract as completions in the student's token ids.

    lang: Tesseract language codes ("eng", "eng+fra"); psm: its page segmentation mode; scale: page
    enlargement before OCR; timeout_s: the longest one page may take (0: no limit); tokenizer: the
    student's (may instead come from `check_tokenizer`).
    """

    name = "tesseract"
    CAPABILITIES: ClassVar[Capabilities] = Capabilities(generate=True, images=True)

    def __init__(self, lang: str = "eng", psm: int = DEFAULT_PSM, *, scale: float = DEFAULT_SCALE,
                 timeout_s: float = 60.0, tokenizer: Any = None, name: str = "tesseract") -> None:
        if not 1 <= int(psm) <= 13:
            raise ValueError(f"teacher_backend.psm must be a Tesseract page segmentation mode from 1 to 13, got {psm}")
        if float(scale) <= 0:
            raise ValueError(f"teacher_backend.scale must be > 0, got {scale}")
        self.lang, self.psm, self.scale, self.timeout_s = str(lang), int(psm), float(scale), float(timeout_s)
        self.tokenizer = tokenizer
        self.name = name
        self.version: Optional[str] = None

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Keep the student's tokenizer (completions are tokenized with it) and check, at start, that
        the tesseract binary and the languages run (raises TesseractUnavailable: what to install)."""
        self.tokenizer = tokenizer
        self.version = check_tesseract(self.lang)

    def topk(self, request: ScoreRequest, k: int, temperature: float = 1.0) -> TopKView:
        raise TeacherBackendError(f"teacher backend '{self.name}' gives no token probabilities, only "
                                  "generated page text (Tesseract is not a language model)")

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, max_new_tokens: int,
                 temperature: float = 1.0, do_sample: bool = True,
                 eos_token_id: Optional[int | Sequence[int]] = None,
                 vision: Any = None) -> torch.Tensor:
        """[B, C] ids of each row's page text, EOS after it when it fits, right-padded with the pad id
        and capped at `max_new_tokens`, on `prompt_ids`' device. `vision.images()[b]` is row b's page
        (`forge.decoding.vision.VisionInputs`)."""
        if self.tokenizer is None:
            raise TeacherBackendError(f"teacher backend '{self.name}' has no tokenizer: call "
                                      "check_tokenizer(student_tokenizer) first (or pass tokenizer=...)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        rows = int(prompt_ids.shape[0])
        images = vision.images() if vision is not None and getattr(vision, "pages", None) is not None else None
        if images is None or len(images) != rows:
            got = "no images" if images is None else f"{len(images)} image(s)"
            raise TeacherBackendError(f"teacher backend '{self.name}' reads pages: generate needs vision= with one "
                                      f"page image per prompt row ({rows} rows), but got {got}")
        eos = first_eos(self.tokenizer, eos_token_id)
        texts = [tesseract_markdown(image, self.lang, self.psm, scale=self.scale, timeout_s=self.timeout_s)
                 for image in images]
        ids = [completion_row(self.tokenizer, text, max_new_tokens, eos, finished=True) for text in texts]
        return right_padded(ids, pad_id(self.tokenizer, eos), prompt_ids.device)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "engine": f"tesseract {self.version or '?'}", "lang": self.lang,
                "psm": self.psm, "scale": self.scale}


__all__ = ["TesseractBackend"]
