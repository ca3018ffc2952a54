"""Lay a document out on a page: wrap words, place lines, and cut what does not fit.

Layout is separate from drawing so the ground truth is decided before any pixel: each block comes
back as what is visible of it (a paragraph cut to the lines that fit, a table to the rows that fit,
a table's columns to the page width) and the draw operations that show exactly that. Blocks flow
top-down; the first block that does not fit whole ends the page, and everything after it is
dropped, so the markdown is always a prefix of the document and equals what the image shows.

Text is measured with the font it is drawn with (Pillow's built-in scalable font), so a line never
runs past its box. A word wider than its box is not split; it ends the page like any overflow.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Union

from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_document import Block, Columns, Equation, Heading, ListBlock, Paragraph, Table, marker
from forge.data.ocr.synth_ops import (
    Area,
    DotOp,
    Fit,
    Op,
    PageLayout,
    TextOp,
    fitting_lines,
    font,
    line_height,
    text_width,
    wrap,
)
from forge.data.ocr.synth_table import place_table


def layout_page(blocks: tuple[Block, ...], config: SynthConfig) -> PageLayout:
    """Place `blocks` inside the page margins; see the module docstring for what is dropped."""
    area = Area(config.margin, config.width - 2 * config.margin, config.height - config.margin)
    kept, ops, _, _ = layout_flow(blocks, area, config.margin, config)
    return PageLayout(tuple(kept), tuple(ops))


def layout_flow(
    blocks: tuple[Block, ...], area: Area, y: int, config: SynthConfig
) -> tuple[list[Block], list[Op], int, bool]:
    """Place blocks one below the other from `y`, stopping at the first that does not fit whole.
    Returns the visible blocks, their ops, the y below the last, and whether all fit.

    A `##` section heading that nothing of its section follows is taken back: a heading alone
    at the foot of a page is a layout accident no real document shows."""
    kept: list[Block] = []
    ops: list[Op] = []
    undo: list[tuple[int, int]] = []  # per kept block: len(ops) and y before it
    for index, block in enumerate(blocks):
        top = y + (_gap_before(block, config) if index else 0)
        fit = _place(block, area, top, config)
        if fit.block is not None:
            undo.append((len(ops), y))
            kept.append(fit.block)
            ops.extend(fit.ops)
            y = fit.bottom
        if fit.complete:
            continue
        if fit.block is None and kept and isinstance(kept[-1], Heading) and kept[-1].level == 2:
            kept.pop()
            start, y = undo.pop()
            del ops[start:]
        return kept, ops, y, False
    return kept, ops, y, True


def _gap_before(block: Block, config: SynthConfig) -> int:
    """Space between blocks: most of a body line, a little more above a heading."""
    body = line_height(config.font_size, config.line_spacing)
    return round(body * (1.0 if isinstance(block, Heading) else 0.6))


def _place(block: Block, area: Area, y: int, config: SynthConfig) -> Fit:
    if isinstance(block, Heading):
        scale = config.h1_scale if block.level == 1 else config.h2_scale
        return _place_lines(block, area, y, round(config.font_size * scale), config)
    if isinstance(block, Paragraph):
        return _place_lines(block, area, y, config.font_size, config)
    if isinstance(block, Equation):
        return _place_equation(block, area, y, config)
    if isinstance(block, ListBlock):
        return _place_list(block, area, y, config)
    if isinstance(block, Table):
        return place_table(block, area, y, config)
    return _place_columns(block, area, y, config)


def _place_lines(
    block: Union[Heading, Paragraph], area: Area, y: int, size: int, config: SynthConfig
) -> Fit:
    """Wrapped text, left-aligned. A paragraph keeps the lines that fit (its markdown becomes their
    words); a heading is bold and shown whole or not at all (half a title is another title)."""
    bold = isinstance(block, Heading)
    lines = wrap(block.text, size, area.width, bold) or []
    step = line_height(size, config.line_spacing)
    count = fitting_lines(len(lines), y, step, area.bottom)
    if count == 0 or (bold and count < len(lines)):
        return Fit(None, (), y, False)
    ops = tuple(TextOp(area.x, y + i * step, line, size, bold) for i, line in enumerate(lines[:count]))
    visible = replace(block, text=" ".join(lines[:count]))
    return Fit(visible, ops, y + count * step, count == len(lines))


def _place_equation(block: Equation, area: Area, y: int, config: SynthConfig) -> Fit:
    """A display equation: one line, centred, whole or not at all."""
    size = config.font_size
    width, step = text_width(block.text, size), line_height(size, config.line_spacing)
    if width > area.width or y + step > area.bottom:
        return Fit(None, (), y, False)
    op = TextOp(area.x + (area.width - width) // 2, y, block.text, size)
    return Fit(block, (op,), y + step, True)


def _place_list(block: ListBlock, area: Area, y: int, config: SynthConfig) -> Fit:
    """Items with a hanging indent after their marker (a drawn dot, or `1.` as text); the item
    that does not fit whole is cut to its visible lines and ends the list."""
    size = config.font_size
    indent = text_width(f"{len(block.items)}.", size) + round(size * 0.6)
    item_area = Area(area.x + indent, area.width - indent, area.bottom)
    items: list[str] = []
    ops: list[Op] = []
    complete = True
    for index, item in enumerate(block.items):
        fit = _place_lines(Paragraph(item), item_area, y, size, config)
        if fit.block is not None:
            ops.append(_marker_op(block.ordered, index, area.x, y, size))
            ops.extend(fit.ops)
            items.append(fit.block.text)  # type: ignore[union-attr]
            y = fit.bottom
        if not fit.complete:
            complete = False
            break
    if not items:
        return Fit(None, (), y, False)
    return Fit(ListBlock(tuple(items), block.ordered), tuple(ops), y, complete)


def _marker_op(ordered: bool, index: int, x: int, y: int, size: int) -> Op:
    if ordered:
        return TextOp(x, y, marker(True, index), size)
    ascent, _ = font(size).getmetrics()
    radius = max(1, round(size * 0.14))
    return DotOp(x + radius + 1, y + ascent - round(size * 0.3), radius)


def _place_columns(block: Columns, area: Area, y: int, config: SynthConfig) -> Fit:
    """Two columns side by side from the same top, each cut on its own; the block ends below the
    longer one. Reading order (left, then right) is the markdown's order."""
    width = (area.width - config.column_gap) // 2
    left_area = Area(area.x, width, area.bottom)
    right_area = Area(area.x + width + config.column_gap, width, area.bottom)
    left, left_ops, left_end, left_done = layout_flow(block.left, left_area, y, config)
    if not left:
        return Fit(None, (), y, False)
    right, right_ops, right_end, right_done = layout_flow(block.right, right_area, y, config)
    visible = Columns(tuple(left), tuple(right))  # type: ignore[arg-type]
    return Fit(visible, tuple(left_ops + right_ops), max(left_end, right_end), left_done and right_done)
