"""Tesseract through pytesseract: a page image in, its text out, paragraphs separated by blank lines.

Why Tesseract at all: it is the classical OCR engine every document benchmark quotes, it runs on a
CPU (0.7 s for a 448x448 page, 1.6 s for 768x1024, one thread) and needs no weights, so it gives an
OCR number (and page labels) before any vision-language model has been trained.

What it gives is plain text, not markdown: no `#` headings, no list markers it did not read as
characters, no tables. `tesseract_markdown` only lays that text out the way markdown lays out prose:
the words of a paragraph on one line, a blank line between paragraphs. On 32 synthetic pages this
scores 0.849 / 0.831 edit similarity against 0.842 / 0.828 with Tesseract's own line breaks kept
(448x448 / 768x1024; benchmarks/tesseract_baseline.py --keep-lines). Anything more (guessing headings
from font size) would be a hand-made heuristic scored as if it were Tesseract.

Install: Debian's `tesseract-ocr` with `tesseract-ocr-eng` (and `-fra`), and pip's `pytesseract`;
`.ci/install.sh` does both.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from PIL import Image

__all__ = ["DEFAULT_PSM", "DEFAULT_SCALE", "TesseractUnavailable", "check_tesseract", "paragraphs_from_data",
           "tesseract_markdown"]

#: Tesseract's page segmentation mode 3, "fully automatic page segmentation": it finds the columns and
#: blocks itself. Measured on 32 synthetic 448x448 pages (scale 1): 0.820, against 0.791 for 4 (one column)
#: and 0.700 for 6 (one block).
DEFAULT_PSM = 3
#: pages are enlarged this many times before OCR: Tesseract is tuned for ~300 dpi scans, and the 14-16 px
#: body text of rendered pages is small for it. Measured on 32 synthetic pages: x2 raised edit similarity from
#: 0.820 to 0.849 (448x448, font 14) and from 0.815 to 0.831 (768x1024, font 16). Not monotonic: x1.5 was best
#: on the small pages (0.863) and worst on the large (0.77 on 16), x2.5-3 lost on both; x2 wins on both.
DEFAULT_SCALE = 2.0
INSTALL_HINT = ("install Debian's tesseract-ocr and its language data (apt-get install tesseract-ocr "
                "tesseract-ocr-eng tesseract-ocr-fra) and pip's pytesseract; .ci/install.sh does both")
_WORD_LEVEL = 5  # image_to_data levels: 1 page, 2 block, 3 paragraph, 4 line, 5 word


class TesseractUnavailable(RuntimeError):
    """The tesseract binary, a language's data or the pytesseract package is missing."""


def _pytesseract() -> Any:
    try:
        import pytesseract
    except ImportError as exc:
        raise TesseractUnavailable(f"the pytesseract package is not installed: {INSTALL_HINT}") from exc
    return pytesseract


def check_tesseract(lang: str = "eng") -> str:
    """Tesseract's version, after checking that the binary runs and has every language of `lang`
    ("eng", "eng+fra"). Call it once before a run, so a missing package fails at start."""
    if not lang or not all(lang.split("+")):
        raise ValueError(f"lang must be Tesseract language codes joined by '+' (e.g. 'eng+fra'), got {lang!r}")
    pt = _pytesseract()
    try:
        version = str(pt.get_tesseract_version())
        installed = set(pt.get_languages(config=""))
    except pt.TesseractNotFoundError as exc:
        raise TesseractUnavailable(f"the tesseract binary is not on PATH: {INSTALL_HINT}") from exc
    missing = [code for code in lang.split("+") if code not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{code.replace('_', '-').lower()}" for code in missing)
        raise TesseractUnavailable(
            f"tesseract {version} has no language data for {lang!r} (installed: {', '.join(sorted(installed))}); "
            f"apt-get install {packages}, or pick an installed language")
    return version


@contextmanager
def _one_omp_thread() -> Iterator[None]:
    """Run tesseract on one OpenMP thread unless OMP_THREAD_LIMIT is already set.

    Measured on 2 shared cores (448x448 pages, scale 1): 0.49 s/page on one thread against 1.17 s/page
    with its default threads, which contend with everything else running. Pages are parallel work; one
    page is not. pytesseract hands `os.environ` to the subprocess, so the variable is set only around the call.
    """
    if "OMP_THREAD_LIMIT" in os.environ:
        yield
        return
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OMP_THREAD_LIMIT", None)


def _prepared(image: Image.Image, scale: float) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"tesseract_markdown takes a PIL.Image.Image, got {type(image).__name__}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if scale != 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def paragraphs_from_data(data: dict[str, list[Any]], line_break: str = " ") -> list[str]:
    """Tesseract's words (`image_to_data` as a dict) grouped into its paragraphs, in its reading order:
    each paragraph's lines joined by `line_break`."""
    lines: dict[tuple[int, int], dict[int, list[str]]] = {}
    for i, level in enumerate(data["level"]):
        word = str(data["text"][i]).strip()
        if int(level) != _WORD_LEVEL or not word:
            continue
        paragraph = (int(data["block_num"][i]), int(data["par_num"][i]))
        lines.setdefault(paragraph, {}).setdefault(int(data["line_num"][i]), []).append(word)
    return [line_break.join(" ".join(words) for words in par.values()) for par in lines.values()]


def tesseract_markdown(image: Image.Image, lang: str = "eng", psm: int = DEFAULT_PSM, *,
                       scale: float = DEFAULT_SCALE, keep_lines: bool = False, timeout_s: float = 60.0) -> str:
    """The text Tesseract reads on `image`: one line per paragraph, paragraphs separated by a blank
    line (plain text laid out as markdown prose; Tesseract finds no headings, lists or tables).

    lang: Tesseract language codes, "+"-joined ("eng+fra"); psm: its page segmentation mode (1-13);
    scale: enlargement before OCR; keep_lines: keep Tesseract's line breaks inside a paragraph (scores
    lower against markdown, kept to measure that); timeout_s: the longest one page may take (0: none).
    Raises TesseractUnavailable (what to install) when the binary or a language is missing.
    """
    if not 1 <= int(psm) <= 13:
        raise ValueError(f"psm must be a Tesseract page segmentation mode from 1 to 13, got {psm} "
                         "(0 detects orientation only and reads no text)")
    pt = _pytesseract()
    page = _prepared(image, scale)
    try:
        with _one_omp_thread():
            data = pt.image_to_data(page, lang=lang, config=f"--psm {int(psm)}", timeout=timeout_s,
                                    output_type=pt.Output.DICT)
    except pt.TesseractNotFoundError as exc:
        raise TesseractUnavailable(f"the tesseract binary is not on PATH: {INSTALL_HINT}") from exc
    except pt.TesseractError as exc:
        if "Failed loading language" in str(exc):
            check_tesseract(lang)  # raises with the installed languages and the package to add
        raise
    except RuntimeError as exc:
        if "timeout" in str(exc).lower():
            raise TimeoutError(f"tesseract took over {timeout_s} s on a {image.width}x{image.height} page "
                               "(raise timeout_s, or lower scale)") from exc
        raise
    return "\n\n".join(paragraphs_from_data(data, "\n" if keep_lines else " "))
