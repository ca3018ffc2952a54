"""The document model of a synthetic page: a tuple of blocks, and the markdown each one writes.

One model serves both outputs: the layout draws these blocks and the markdown is written from the
very blocks it kept (a paragraph cut to its visible lines, a table cut to its visible rows), so the
ground truth cannot drift from the picture. Markdown conventions (the OCR target's syntax):

  * `# Title` and `## Section` headings;
  * a paragraph on one line (the page's line breaks are wrapping, not content);
  * `- item` bulleted and `1. item` numbered lists, one item a line;
  * pipe tables: `| A | B |`, then `| --- | --- |`, then one `| ... |` line a body row;
  * math as the plain text drawn (`x^2 + 3x = 10`, `a/b`), inline in a sentence or as a display
    equation on its own line; no `$` delimiters, because the page shows none;
  * two text columns as the left column's blocks then the right column's (reading order), with no
    marker: a reader of the page sees two columns of paragraphs, not a construct to transcribe.

Blocks are separated by one blank line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Heading:
    """A `#` (level 1, the title) or `##` (level 2, a section) heading."""

    level: int
    text: str

    def markdown(self) -> str:
        return "#" * self.level + " " + self.text


@dataclass(frozen=True)
class Paragraph:
    """Running text; sentences may hold inline math."""

    text: str

    def markdown(self) -> str:
        return self.text


@dataclass(frozen=True)
class ListBlock:
    """A bulleted (`- `) or numbered (`1. `, `2. `, ...) list."""

    items: tuple[str, ...]
    ordered: bool

    def markdown(self) -> str:
        return "\n".join(f"{marker(self.ordered, i)} {item}" for i, item in enumerate(self.items))


@dataclass(frozen=True)
class Table:
    """A grid with one header row; every row has as many cells as the header."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def markdown(self) -> str:
        lines = [_pipe_row(self.header), _pipe_row(("---",) * len(self.header))]
        lines += [_pipe_row(row) for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Equation:
    """A display equation: one math expression, centred on its own line."""

    text: str

    def markdown(self) -> str:
        return self.text


@dataclass(frozen=True)
class Columns:
    """Two side-by-side text columns, each a tuple of paragraphs, read left then right."""

    left: tuple[Paragraph, ...]
    right: tuple[Paragraph, ...]

    def markdown(self) -> str:
        return to_markdown(self.left + self.right)


Block = Union[Heading, Paragraph, ListBlock, Table, Equation, Columns]


def marker(ordered: bool, index: int) -> str:
    """The list marker of item `index` (0-based) as written in markdown: `-`, or `1.`, `2.`, ..."""
    return f"{index + 1}." if ordered else "-"


def to_markdown(blocks: tuple[Block, ...]) -> str:
    """The markdown of a document: each block's markdown, one blank line between blocks."""
    return "\n\n".join(block.markdown() for block in blocks)


def _pipe_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"
