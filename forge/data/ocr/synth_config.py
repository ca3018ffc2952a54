"""`SynthConfig`: every knob of a synthetic page (size, type, content mix, noise) in one frozen value.

Frozen so a config can be shared by many pages (and worker processes) without one page changing
another's layout, and so `render_page(config, seed)` is a pure function of its arguments. The
fields are flat scalars and (min, max) pairs so a Hydra `task:` block can set each one; `validate()`
reports every bad value at once as `ConfigProblem(key="task.<field>")`, before any page is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from forge.config.errors import ConfigProblem

#: the block kinds the generator draws from, each with a `<kind>_weight` field below.
BLOCK_KINDS: tuple[str, ...] = ("paragraph", "bullets", "numbered", "table", "equation", "columns")
#: the (min, max) count fields; validate() wants 1 <= min <= max for each.
RANGE_FIELDS: tuple[str, ...] = (
    "paragraph_sentences",
    "sentence_words",
    "list_items",
    "table_rows",
    "table_cols",
    "column_paragraphs",
)
#: the widest rotation allowed: beyond it, page corners (and the text in them) rotate off the page.
MAX_ROTATION_DEG = 10.0
#: a line must hold this many font sizes of width (about 16 average characters), or words cannot wrap.
MIN_LINE_EMS = 10
#: the largest page side, so a typo (10240 for 1024) fails fast instead of allocating gigabytes.
MAX_SIDE = 8192


@dataclass(frozen=True)
class SynthConfig:
    """A synthetic page: geometry and type, what the document holds, and how the scan is degraded.

    Geometry, in pixels:
      `width`, `height`: the page. `margin`: blank border on all four sides.
      `font_size`: body text size of Pillow's built-in scalable font (tables and lists too).
      `line_spacing`: a line every `line_spacing` x the font's ascent+descent (1.0 to 3.0).
      `h1_scale`, `h2_scale`: the title (`#`) and section (`##`) sizes as multiples of `font_size`.
      `column_gap`: the space between the two text columns of a `columns` block.
      `grayscale`: an "L" image instead of "RGB" (the pixels are grey either way).

    Content:
      `title`: start with a `# Title`. `blocks`: blocks after it (what does not fit is dropped).
      `section_prob`: the chance of a `## Section` heading before a block.
      `paragraph_weight`, `bullets_weight`, `numbered_weight`, `table_weight`, `equation_weight`,
      `columns_weight`: relative odds of each block kind (0 turns a kind off).
      `math_prob`: the chance a sentence is an inline math clause (`Then x^2 + 3x = 10.`).
      Inclusive (min, max) counts: `paragraph_sentences`, `sentence_words`, `list_items`,
      `table_rows` (body rows), `table_cols`, `column_paragraphs` (paragraphs per column).

    Noise, all off by default:
      `blur_radius`: Gaussian blur radius in pixels. `max_rotation_deg`: a tilt drawn uniformly in
      +-this many degrees (0 to 10), corners filled white. `speckle`: the fraction of pixels turned
      black or white (salt and pepper, 0 to 0.5). `jpeg_quality`: re-encode as JPEG at this quality
      (1..95), or None for none.
    """

    width: int = 768
    height: int = 1024
    margin: int = 40
    font_size: int = 16
    line_spacing: float = 1.15
    h1_scale: float = 1.6
    h2_scale: float = 1.3
    column_gap: int = 24
    grayscale: bool = False

    title: bool = True
    blocks: int = 12
    section_prob: float = 0.35
    paragraph_weight: float = 4.0
    bullets_weight: float = 1.0
    numbered_weight: float = 1.0
    table_weight: float = 1.0
    equation_weight: float = 0.5
    columns_weight: float = 1.0
    math_prob: float = 0.15
    paragraph_sentences: tuple[int, int] = (1, 4)
    sentence_words: tuple[int, int] = (4, 12)
    list_items: tuple[int, int] = (2, 5)
    table_rows: tuple[int, int] = (2, 5)
    table_cols: tuple[int, int] = (2, 4)
    column_paragraphs: tuple[int, int] = (1, 2)

    blur_radius: float = 0.0
    max_rotation_deg: float = 0.0
    speckle: float = 0.0
    jpeg_quality: Optional[int] = None

    def __post_init__(self) -> None:
        # Hydra hands (min, max) pairs over as lists; tuples keep the config hashable and frozen.
        for name in RANGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def weights(self) -> dict[str, float]:
        """The block-kind weights by kind, in `BLOCK_KINDS` order."""
        return {kind: float(getattr(self, f"{kind}_weight")) for kind in BLOCK_KINDS}

    def validate(self) -> list[ConfigProblem]:
        """Every bad value as a ConfigProblem keyed `task.<field>`; an empty list means usable."""
        return [
            *_geometry_problems(self),
            *_content_problems(self),
            *_noise_problems(self),
        ]


def field_names() -> tuple[str, ...]:
    """The config's field names, e.g. for a task schema that forwards `task.<field>` keys."""
    return tuple(f.name for f in fields(SynthConfig))


def _problem(name: str, value: object, message: str, fix: str) -> ConfigProblem:
    return ConfigProblem(key=f"task.{name}", value=value, message=message, fix=fix)


def _positive(config: SynthConfig, names: tuple[str, ...], minimum: float = 1) -> list[ConfigProblem]:
    return [
        _problem(name, getattr(config, name), f"must be at least {minimum}", f"set it to {minimum} or more")
        for name in names
        if not _at_least(getattr(config, name), minimum)
    ]


def _at_least(value: object, minimum: float) -> bool:
    """A real number (not a bool, not None) of at least `minimum`; NaN fails."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum


def _in_range(value: object, low: float, high: float) -> bool:
    """A real number in [low, high]."""
    return _at_least(value, low) and value <= high  # type: ignore[operator]


def _geometry_problems(c: SynthConfig) -> list[ConfigProblem]:
    """Sizes that cannot make a page, and a font that leaves no room for a line of text."""
    problems = _positive(c, ("width", "height", "font_size"))
    problems += _positive(c, ("margin", "column_gap"), minimum=0)
    problems += _positive(c, ("h1_scale", "h2_scale"), minimum=1.0)
    for name in ("width", "height"):
        if getattr(c, name) > MAX_SIDE:
            problems.append(_problem(name, getattr(c, name), f"is over {MAX_SIDE} pixels", "use a smaller page"))
    if not _in_range(c.line_spacing, 1.0, 3.0):
        problems.append(_problem("line_spacing", c.line_spacing, "must be in [1.0, 3.0]", "use about 1.15"))
    if problems:
        return problems
    inner_w, inner_h = c.width - 2 * c.margin, c.height - 2 * c.margin
    if inner_w < 1 or inner_h < 1:
        return [_problem("margin", c.margin, f"leaves no room on a {c.width}x{c.height} page", "use a smaller margin")]
    if inner_w < MIN_LINE_EMS * c.font_size:
        problems.append(_problem(
            "font_size", c.font_size,
            f"is too large: a line of the {inner_w}-pixel text width holds under {MIN_LINE_EMS} font sizes",
            f"use font_size <= {inner_w // MIN_LINE_EMS} or a wider page / smaller margin",
        ))
    elif 2 * c.font_size * c.h1_scale * c.line_spacing > inner_h:
        problems.append(_problem(
            "font_size", c.font_size,
            f"is too large: two title lines do not fit the {inner_h}-pixel text height",
            "use a smaller font_size or h1_scale, or a taller page",
        ))
    return problems


def _content_problems(c: SynthConfig) -> list[ConfigProblem]:
    """Counts, probabilities and weights the generator cannot draw from."""
    problems = _positive(c, ("blocks",), minimum=0)
    problems += _probabilities(c, ("section_prob", "math_prob"))
    weights = c.weights()
    for kind, weight in weights.items():
        if not _at_least(weight, 0):
            problems.append(_problem(f"{kind}_weight", weight, "must be >= 0", "use 0 to turn the kind off"))
    if all(w == 0 for w in weights.values()) and c.blocks > 0:
        problems.append(_problem("paragraph_weight", 0.0, "every block weight is 0", "give one kind a positive weight"))
    for name in RANGE_FIELDS:
        value = getattr(c, name)
        if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value)):
            problems.append(_problem(name, value, "must be a (min, max) pair of integers", "e.g. [2, 5]"))
        elif not 1 <= value[0] <= value[1]:
            problems.append(_problem(name, value, "needs 1 <= min <= max", "e.g. [2, 5]"))
    return problems


def _probabilities(c: SynthConfig, names: tuple[str, ...]) -> list[ConfigProblem]:
    return [
        _problem(name, getattr(c, name), "is a probability: it must be in [0, 1]", "use a value from 0 to 1")
        for name in names
        if not _in_range(getattr(c, name), 0.0, 1.0)
    ]


def _noise_problems(c: SynthConfig) -> list[ConfigProblem]:
    """Degradations out of the range a scanned page plausibly shows."""
    problems = _positive(c, ("blur_radius",), minimum=0)
    if not _in_range(c.max_rotation_deg, 0.0, MAX_ROTATION_DEG):
        problems.append(_problem(
            "max_rotation_deg", c.max_rotation_deg, f"must be in [0, {MAX_ROTATION_DEG:g}] degrees",
            "a scan is tilted by a few degrees at most; use e.g. 2",
        ))
    if not _in_range(c.speckle, 0.0, 0.5):
        problems.append(_problem("speckle", c.speckle, "is a pixel fraction: it must be in [0, 0.5]", "use e.g. 0.01"))
    q = c.jpeg_quality
    if q is not None and (isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 95):
        problems.append(_problem(
            "jpeg_quality", q, "must be an integer in 1..95 (Pillow's useful range) or null",
            "use e.g. 60, or null for no JPEG",
        ))
    return problems
