"""Lay out a pipe table as a ruled grid: cells one line each, columns as wide as their widest cell.

A table is cut in both directions to what fits, and the cut table is what the markdown writes:
columns are dropped from the right until the grid fits the width (a table of one column too wide
does not fit at all), body rows from the bottom until it fits the height (a header with no body row
does not count as a table). Cells never wrap, which keeps one markdown row one grid row.
"""

from __future__ import annotations

from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_document import Table
from forge.data.ocr.synth_ops import Area, Fit, Op, RuleOp, TextOp, fitting_lines, line_height, text_width


def place_table(block: Table, area: Area, y: int, config: SynthConfig) -> Fit:
    """The visible part of `block` at `y` with its grid and cell text (header bold-ish)."""
    size = config.font_size
    pad = max(2, round(size * 0.4))
    widths = _column_widths(block, size, pad, area.width)
    row_step = line_height(size, config.line_spacing) + 2 * pad
    # the grid's last rule is drawn one pixel below the last row, hence the 1.
    rows = fitting_lines(1 + len(block.rows), y, row_step, area.bottom - 1) - 1
    if not widths or rows < 1:
        return Fit(None, (), y, False)
    cols = len(widths)
    visible = Table(block.header[:cols], tuple(row[:cols] for row in block.rows[:rows]))
    ops = _grid(widths, 1 + rows, area.x, y, row_step) + _cells(visible, widths, area.x, y, row_step, pad, size)
    complete = cols == len(block.header) and rows == len(block.rows)
    return Fit(visible, ops, y + (1 + rows) * row_step + 1, complete)


def _column_widths(block: Table, size: int, pad: int, width: int) -> list[int]:
    """Each column's width (widest cell plus padding), dropping columns from the right until the
    grid fits `width`; an empty list when not even the first column fits."""
    widths = []
    for col, head in enumerate(block.header):
        cells = [text_width(head, size, bold=True)] + [text_width(row[col], size) for row in block.rows]
        widths.append(max(cells) + 2 * pad)
    while widths and sum(widths) + 1 > width:
        widths.pop()
    return widths


def _grid(widths: list[int], rows: int, x: int, y: int, row_step: int) -> tuple[Op, ...]:
    """Horizontal rules above every row and below the last, vertical rules at every column edge."""
    right, bottom = x + sum(widths), y + rows * row_step
    horizontal = [RuleOp(x, y + r * row_step, right, y + r * row_step) for r in range(rows + 1)]
    edges = [x]
    for w in widths:
        edges.append(edges[-1] + w)
    vertical = [RuleOp(e, y, e, bottom) for e in edges]
    return tuple(horizontal + vertical)


def _cells(table: Table, widths: list[int], x: int, y: int, row_step: int, pad: int, size: int) -> tuple[Op, ...]:
    ops: list[Op] = []
    for r, row in enumerate((table.header, *table.rows)):
        left = x
        for text, w in zip(row, widths):
            ops.append(TextOp(left + pad, y + r * row_step + pad, text, size, bold=r == 0))
            left += w
    return tuple(ops)
