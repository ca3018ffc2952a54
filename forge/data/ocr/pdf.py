"""PDF pages through pypdfium2: how many pages a file has, and one page as a PIL image.

pypdfium2 ships PDFium as a wheel, so rendering needs no system package (poppler's pdftoppm, which
olmocr's own pipeline calls, is not on every cluster node). Sizes are in PDF points (1/72 inch).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

#: olmocr's pipeline renders pages with the longest side at 1288 pixels; the default here too, so
#: a model sees pages at the resolution olmOCR's models were trained on.
DEFAULT_LONGEST_SIDE = 1288

_POINTS_PER_INCH = 72.0


def pdf_page_count(path: Path) -> int:
    """Number of pages; raises pypdfium2's PdfiumError (a RuntimeError) for an unreadable file."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        return len(document)
    finally:
        document.close()


def render_scale(
    width_pt: float, height_pt: float, longest_side: int | None, dpi: float | None, max_pixels: int | None = None
) -> float:
    """PDFium's scale (pixels per point) for exactly one of a target longest side, a DPI or a pixel
    budget (`max_pixels`: width x height of the rendered page, about that many pixels)."""
    if sum(option is not None for option in (longest_side, dpi, max_pixels)) != 1:
        raise ValueError("give exactly one of longest_side (pixels), dpi or max_pixels")
    if max_pixels is not None:
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels}")
        return math.sqrt(max_pixels / (width_pt * height_pt))
    if longest_side is not None:
        if longest_side <= 0:
            raise ValueError(f"longest_side must be a positive number of pixels, got {longest_side}")
        return longest_side / max(width_pt, height_pt)
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    return dpi / _POINTS_PER_INCH


def render_pdf_page(
    path: Path, page: int, *, longest_side: int | None = DEFAULT_LONGEST_SIDE, dpi: float | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Page `page` (1-based, as olmOCR-bench numbers pages) of `path` as an RGB image.

    Resolution: `longest_side` pixels for the page's longer edge (the default), or `dpi`, or a pixel
    budget `max_pixels` (pass `longest_side=None` with either). A fixed longest side keeps a VLM's
    image-token budget roughly constant across letter, A4 and odd-sized pages; `max_pixels` renders
    about as many pixels as a Qwen-VL processor's upper bound allows (none rendered only to be
    resized away); a DPI keeps text size constant instead.
    """
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        if not 1 <= page <= len(document):
            raise ValueError(f"{path} has {len(document)} page(s); page {page} does not exist")
        pdf_page = document[page - 1]
        scale = render_scale(*pdf_page.get_size(), longest_side=longest_side, dpi=dpi, max_pixels=max_pixels)
        image = pdf_page.render(scale=scale).to_pil().convert("RGB")
        pdf_page.close()
        return image
    finally:
        document.close()
