"""Synthmix synthetic pages (forge.data.ocr.synth): determinism, the markdown conventions of every
element, the markdown equal to what is drawn (word for word, in reading order), ink only where the
layout put text, rules or bullets, overflow cut from image and markdown alike, noise that changes
pixels and never the text, config validation keyed `task.<field>`, and the lazy split."""

from __future__ import annotations

import random
import re
from math import ceil, floor
from dataclasses import fields

import numpy as np
import pytest

from forge.config.errors import ConfigError
from forge.data.ocr.synth import SynthConfig, SynthSplit, page_seed, render_page, synth_split
from forge.data.ocr.synth_document import Columns, Equation, Heading, ListBlock, Paragraph, Table, to_markdown
from forge.data.ocr.synth_generate import generate_document
from forge.data.ocr.synth_layout import layout_page
from forge.data.ocr.synth_ops import DotOp, PageLayout, RuleOp, TextOp, bold_stroke, font, line_height, text_width
from forge.data.ocr.synth_render import draw_page

SQUARE = SynthConfig(width=448, height=448, margin=24)
NOISE = {"blur_radius": 1.0, "max_rotation_deg": 3.0, "speckle": 0.02, "jpeg_quality": 40}
SEEDS = range(8)


def layout_of(config: SynthConfig, seed: int) -> PageLayout:
    return layout_page(generate_document(config, random.Random(seed)), config)


def markdown_tokens(markdown: str) -> list[str]:
    """The words a reader sees, from the markdown: syntax (`#`, `- `, pipes, `---`) removed, a
    numbered list's `1.` kept (the page draws it as text)."""
    tokens: list[str] = []
    for line in markdown.splitlines():
        line = re.sub(r"^#+ |^- ", "", line)
        if re.fullmatch(r"\|( --- \|)+", line):
            continue
        tokens += [t for t in line.split() if t != "|"]
    return tokens


def drawn_tokens(layout: PageLayout) -> list[str]:
    return [token for op in layout.texts() for token in op.text.split()]


# ---- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_the_same_png_bytes_and_markdown():
    config = SynthConfig(width=448, height=448, margin=24, **NOISE)
    first, second = render_page(config, 11), render_page(config, 11)
    assert first.png_bytes() == second.png_bytes()
    assert first.markdown == second.markdown and first.seed == 11


def test_different_seeds_give_different_pages():
    pages = [render_page(SQUARE, seed) for seed in range(4)]
    assert len({p.markdown for p in pages}) == 4
    assert len({p.png_bytes() for p in pages}) == 4


def test_page_seed_is_a_fixed_hash_free_function():
    # BLAKE2b of "forge-ocr-synth/0/0": the same in every process, whatever PYTHONHASHSEED says.
    assert page_seed(0, 0) == 7180618574055366833
    assert len({page_seed(b, i) for b in range(3) for i in range(50)}) == 150


def test_split_is_lazy_indexable_and_equals_render_page():
    split = synth_split(SQUARE, base_seed=5, n=3)
    assert isinstance(split, SynthSplit) and len(split) == 3
    page = split[-1]
    assert page.seed == page_seed(5, 2)
    assert page.png_bytes() == render_page(SQUARE, page_seed(5, 2)).png_bytes()
    assert [p.seed for p in split[:2]] == [page_seed(5, 0), page_seed(5, 1)]
    with pytest.raises(IndexError):
        split[3]


# ---- the markdown of every element --------------------------------------------------------------


def test_every_element_appears_with_its_markdown_syntax():
    markdown = "\n\n".join(render_page(SynthConfig(), seed).markdown for seed in SEEDS)
    lines = markdown.splitlines()
    assert any(re.fullmatch(r"# [A-Z]\w*( [A-Z]\w*)*", line) for line in lines), "title"
    assert any(re.fullmatch(r"## [A-Z].*", line) for line in lines), "section heading"
    assert any(re.fullmatch(r"- [A-Z].*", line) for line in lines), "bulleted list"
    assert re.search(r"^1\. [A-Z].*\n2\. [A-Z]", markdown, re.M), "numbered list"
    assert re.search(r"\b[a-z]\^2\b|\b\d+/\d+\b", markdown), "inline math"
    tables = re.findall(r"^(\|.*\|)\n(\|( --- \|)+)\n((?:\|.*\|\n?)+)", markdown, re.M)
    assert tables, "pipe table with a header row"
    for header, separator, _, body in tables:
        cells = header.count("|")
        assert separator.count("|") == cells
        assert all(row.count("|") == cells for row in body.strip().splitlines())
    kinds = {type(b) for seed in SEEDS for b in layout_of(SynthConfig(), seed).blocks}
    assert kinds == {Heading, Paragraph, ListBlock, Table, Equation, Columns}


def test_markdown_equals_the_drawn_text_in_reading_order():
    for config in (SynthConfig(), SQUARE):
        for seed in SEEDS:
            layout = layout_of(config, seed)
            assert markdown_tokens(to_markdown(layout.blocks)) == drawn_tokens(layout), seed
            bullets = sum(len(b.items) for b in layout.blocks if isinstance(b, ListBlock) and not b.ordered)
            assert bullets == sum(isinstance(op, DotOp) for op in layout.ops)


def test_two_columns_read_left_then_right():
    left = (Paragraph("Left one is here."), Paragraph("Left two."))
    right = (Paragraph("Right column text."),)
    layout = layout_page((Columns(left, right),), SQUARE)
    assert to_markdown(layout.blocks) == "Left one is here.\n\nLeft two.\n\nRight column text."
    ops = layout.texts()
    middle = SQUARE.width // 2
    assert [op.x < middle for op in ops] == [True, True, False]
    assert ops[0].y == ops[2].y, "both columns start at the same height"


# ---- the image shows the text -------------------------------------------------------------------


def test_ink_lies_only_where_the_layout_drew_and_every_line_has_ink():
    config = SQUARE
    for seed in range(3):
        layout = layout_of(config, seed)
        pixels = np.array(draw_page(layout, config))
        allowed = np.zeros_like(pixels, dtype=bool)
        for op in layout.ops:
            x0, y0, x1, y1 = _box(op, config)
            allowed[y0:y1, x0:x1] = True
            if isinstance(op, TextOp):
                assert (pixels[y0:y1, x0:x1] < 128).any(), f"no ink for {op.text!r}"
        assert (pixels[~allowed] == 255).all()
        text_rows = {y for op in layout.texts() for y in range(op.y, op.y + op.size)}
        assert text_rows and all(y < config.height - config.margin for y in text_rows)


def _box(op, config: SynthConfig) -> tuple[int, int, int, int]:
    """The pixels an op may ink: a text's glyph box as the font reports it, a rule, a dot; one
    pixel of slack for anti-aliasing. The glyph box must lie inside the line's own band."""
    if isinstance(op, TextOp):
        stroke = bold_stroke(op.size) if op.bold else 0
        left, top, right, bottom = font(op.size).getbbox(op.text, stroke_width=stroke)
        assert op.y + bottom <= op.y + line_height(op.size, config.line_spacing)
        assert right <= text_width(op.text, op.size, op.bold) + 1
        return op.x + floor(left) - 1, op.y + floor(top) - 1, op.x + ceil(right) + 1, op.y + ceil(bottom) + 1
    if isinstance(op, RuleOp):
        return op.x0, op.y0, op.x1 + 1, op.y1 + 1
    return op.cx - op.radius - 1, op.cy - op.radius - 1, op.cx + op.radius + 2, op.cy + op.radius + 2


# ---- overflow -----------------------------------------------------------------------------------


def test_overflow_is_dropped_from_image_and_markdown_alike():
    tiny = SynthConfig(width=200, height=120, margin=8, font_size=12)
    for seed in SEEDS:
        full = to_markdown(generate_document(tiny, random.Random(seed)))
        layout = layout_of(tiny, seed)
        page = render_page(tiny, seed)
        assert page.markdown == to_markdown(layout.blocks)
        assert len(page.markdown) < len(full)
        assert markdown_tokens(page.markdown) == drawn_tokens(layout)
        assert all(op.y + line_height(op.size, tiny.line_spacing) <= 120 - 8 for op in layout.texts())


def test_a_section_heading_whose_section_does_not_fit_is_dropped_too():
    heading = Heading(2, "Orphan")
    table = Table(("Name", "Value"), tuple((f"Row{i}", "1") for i in range(3)))
    tiny = SynthConfig(width=448, height=200, margin=24)
    first = Paragraph(" ".join(["filler"] * 25))
    assert layout_page((first, heading), tiny).blocks == (first, heading), "the heading alone fits"
    layout = layout_page((first, heading, table), tiny)
    assert layout.blocks == (first,) and drawn_tokens(layout) == first.text.split()
    roomy = layout_page((first, heading, table), SQUARE)
    assert roomy.blocks == (first, heading, table)


def test_a_paragraph_is_cut_to_its_visible_lines():
    words = " ".join(f"word{i}" for i in range(300))
    layout = layout_page((Paragraph(words),), SQUARE)
    (visible,) = layout.blocks
    assert 20 < len(visible.text.split()) < 300
    assert words.startswith(visible.text + " ")
    assert visible.text.split() == drawn_tokens(layout)


def test_a_table_is_cut_to_the_rows_and_columns_that_fit():
    header = tuple(f"Column{i}" for i in range(12))
    rows = tuple(tuple(f"cell{r}x{c}" for c in range(12)) for r in range(40))
    layout = layout_page((Table(header, rows),), SQUARE)
    (table,) = layout.blocks
    assert 1 <= len(table.header) < 12 and 1 <= len(table.rows) < 40
    assert all(len(row) == len(table.header) for row in table.rows)
    assert table.rows[0] == rows[0][: len(table.header)]
    assert markdown_tokens(table.markdown()) == drawn_tokens(layout)


# ---- noise and modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("option", sorted(NOISE))
def test_each_noise_changes_pixels_but_not_markdown(option):
    clean = render_page(SQUARE, 3)
    noisy = render_page(SynthConfig(width=448, height=448, margin=24, **{option: NOISE[option]}), 3)
    assert noisy.markdown == clean.markdown
    assert noisy.image.size == clean.image.size and noisy.image.mode == clean.image.mode
    assert noisy.png_bytes() != clean.png_bytes()


def test_rgb_by_default_and_grayscale_on_request():
    assert render_page(SQUARE, 1).image.mode == "RGB"
    gray = render_page(SynthConfig(width=448, height=448, margin=24, grayscale=True), 1)
    assert gray.image.mode == "L" and gray.image.size == (448, 448)


# ---- validation ---------------------------------------------------------------------------------


def test_default_config_is_valid_and_every_field_documented():
    assert SynthConfig().validate() == []
    doc = SynthConfig.__doc__ or ""
    assert all(f"`{f.name}`" in doc for f in fields(SynthConfig))


def test_validation_names_every_bad_key():
    bad = SynthConfig(
        width=0, line_spacing=0.5, max_rotation_deg=30, jpeg_quality=0, math_prob=1.5,
        section_prob=-0.1, table_cols=(3, 2), speckle=0.9, table_weight=-1, blur_radius=-2,
    )
    keys = {p.key for p in bad.validate()}
    assert keys == {
        "task.width", "task.line_spacing", "task.max_rotation_deg", "task.jpeg_quality", "task.math_prob",
        "task.section_prob", "task.table_cols", "task.speckle", "task.table_weight", "task.blur_radius",
    }
    with pytest.raises(ConfigError, match="task.width"):
        render_page(bad, 0)


def test_font_too_large_for_the_page_is_refused():
    (problem,) = SynthConfig(width=200, height=200, margin=20, font_size=40).validate()
    assert problem.key == "task.font_size" and problem.value == 40 and problem.fix
    (problem,) = SynthConfig(width=400, height=60, margin=5, font_size=20).validate()
    assert problem.key == "task.font_size"
    with pytest.raises(ConfigError, match="task.margin"):
        synth_split(SynthConfig(width=100, height=100, margin=60), 0, 1)
