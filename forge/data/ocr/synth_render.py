"""Draw a PageLayout onto a white page: text lines, table rules and bullet dots, in black ink.

Drawing decides nothing: every position, line and cut was fixed by the layout, so the picture can
only show what the markdown says. Headings and table headers are bold-ish through a thin stroke of
the ink colour (Pillow's built-in font has no bold face).
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_ops import DotOp, PageLayout, RuleOp, TextOp, bold_stroke, font

#: page and ink values, for "L" and "RGB" alike (grey level 255 and 0 on every channel).
PAPER = 255
INK = 0


def draw_page(layout: PageLayout, config: SynthConfig) -> Image.Image:
    """A `config.width` x `config.height` greyscale ("L") page showing `layout`.

    Always greyscale: black ink on white paper has equal channels, so the caller converts to RGB
    after the noise, which then works on a third of the data (and gives the same pixels).
    """
    image = Image.new("L", (config.width, config.height), PAPER)
    draw = ImageDraw.Draw(image)
    for op in layout.ops:
        if isinstance(op, TextOp):
            stroke = bold_stroke(op.size) if op.bold else 0
            draw.text((op.x, op.y), op.text, fill=INK, font=font(op.size), stroke_width=stroke, stroke_fill=INK)
        elif isinstance(op, RuleOp):
            draw.line((op.x0, op.y0, op.x1, op.y1), fill=INK, width=1)
        elif isinstance(op, DotOp):
            r = op.radius
            draw.ellipse((op.cx - r, op.cy - r, op.cx + r, op.cy + r), fill=INK)
    return image
