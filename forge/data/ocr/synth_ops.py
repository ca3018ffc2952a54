"""Draw operations and text measurement: what layout produces and drawing consumes.

Layout and drawing meet here so they measure and draw with the very same font objects: a line that
layout measured as fitting is drawn with the font it was measured with, and never runs past its box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Union

from PIL import ImageFont

from forge.data.ocr.synth_document import Block


@dataclass(frozen=True)
class TextOp:
    """One line of text with its top-left corner at (x, y): anchor "la", the ascender line."""

    x: int
    y: int
    text: str
    size: int
    bold: bool = False


@dataclass(frozen=True)
class RuleOp:
    """A one-pixel line from (x0, y0) to (x1, y1): a table's grid."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class DotOp:
    """A filled circle: a bullet (the built-in font has no glyph for one)."""

    cx: int
    cy: int
    radius: int


Op = Union[TextOp, RuleOp, DotOp]


@dataclass(frozen=True)
class PageLayout:
    """The visible blocks (the markdown's source) and the operations that draw them."""

    blocks: tuple[Block, ...]
    ops: tuple[Op, ...]

    def texts(self) -> tuple[TextOp, ...]:
        return tuple(op for op in self.ops if isinstance(op, TextOp))


@dataclass(frozen=True)
class Area:
    """A column of the page: left edge, width, and the lowest y a line may reach."""

    x: int
    width: int
    bottom: int


@dataclass(frozen=True)
class Fit:
    """What a block placed at some y left visible (None: nothing), its ops, where it ends, and
    whether all of it fit (if not, the page ends here)."""

    block: Optional[Block]
    ops: tuple[Op, ...]
    bottom: int
    complete: bool


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font at `size` pixels (cached: pages reuse a handful of sizes)."""
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


@lru_cache(maxsize=256)
def line_height(size: int, spacing: float) -> int:
    """Pixels from one line's top to the next: the font's ascent+descent times `spacing` (>= 1),
    so lines never overlap and a line's ink stays inside its own band."""
    ascent, descent = font(size).getmetrics()
    return math.ceil((ascent + descent) * spacing)


def bold_stroke(size: int) -> float:
    """The stroke that makes a heading bold-ish without a bold font: a fiftieth of its size."""
    return round(size / 50, 2)


def text_width(text: str, size: int, bold: bool = False) -> int:
    """The drawn width of `text` in pixels, a bold stroke on both sides included."""
    stroke = 2 * bold_stroke(size) if bold else 0.0
    return math.ceil(font(size).getlength(text) + stroke)


@lru_cache(maxsize=65536)
def _word_width(word: str, size: int) -> float:
    return font(size).getlength(word)


def wrap(text: str, size: int, width: int, bold: bool = False) -> Optional[list[str]]:
    """Greedy word wrap into lines no wider than `width`; None when one word alone is wider.

    Lines are first broken on summed word widths (cached, so a page measures each word once), then
    each line is measured whole; should kerning or shaping make one wider than the sum said, the
    text is wrapped again measuring every candidate line whole, which is exact but slower.
    """
    lines = _wrap_by_word_widths(text.split(), size, width - 2 * bold_stroke(size) * bold)
    if lines is None or all(text_width(line, size, bold) <= width for line in lines):
        return lines
    return _wrap_exact(text.split(), size, width, bold)


def _wrap_by_word_widths(words: list[str], size: int, width: float) -> Optional[list[str]]:
    space = _word_width(" ", size)
    lines: list[list[str]] = []
    used = 0.0
    for word in words:
        w = _word_width(word, size)
        if w > width:
            return None
        if lines and used + space + w <= width:
            lines[-1].append(word)
            used += space + w
        else:
            lines.append([word])
            used = w
    return [" ".join(line) for line in lines]


def _wrap_exact(words: list[str], size: int, width: int, bold: bool) -> Optional[list[str]]:
    lines: list[str] = []
    for word in words:
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(candidate, size, bold) <= width:
            lines[-1] = candidate
        elif text_width(word, size, bold) <= width:
            lines.append(word)
        else:
            return None
    return lines


def fitting_lines(count: int, y: int, step: int, bottom: int) -> int:
    """How many of `count` lines (or table rows) `step` pixels apart fit between `y` and `bottom`."""
    return max(0, min(count, (bottom - y) // step))
