"""Synthmix: synthetic document pages (a Pillow image) with their markdown ground truth.

    from forge.data.ocr.synth import SynthConfig, render_page, synth_split

    page = render_page(SynthConfig(width=448, height=448), seed=7)
    page.image, page.markdown           # PIL image, the markdown of exactly what it shows
    train = synth_split(SynthConfig(), base_seed=0, n=10_000)   # lazy: pages render on access
    train[3].png_bytes()

Seeds. A page is a pure function of (config, seed): `random.Random(seed)` draws the document, and
the noise draws from its own stream `random.Random(derive_seed(seed, "noise"))`, so switching a
noise on or off never changes the text. Page `i` of a split has seed
`page_seed(base_seed, i) = derive_seed(base_seed, i)`: the first 8 bytes (big-endian) of
BLAKE2b over the text "forge-ocr-synth/<base_seed>/<i>". A cryptographic digest rather than
`base_seed + i` keeps neighbouring splits (base seeds 0 and 1) from sharing pages, and it never
touches Python's `hash()`, which is salted per process for strings.

What "identical" covers: the same config and seed give the same markdown and the same PNG bytes
with the same Pillow (its built-in font measures the lines, so it decides where text is cut),
FreeType, zlib and, for speckle, numpy. Python's `random.Random` streams for integer seeds have
been stable across Python 3 releases. Another Pillow may shift pixels, and so where a page ends.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union, overload

from PIL import Image

from forge.config.errors import ConfigError
from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_document import to_markdown
from forge.data.ocr.synth_generate import generate_document
from forge.data.ocr.synth_layout import layout_page
from forge.data.ocr.synth_noise import apply_noise
from forge.data.ocr.synth_render import draw_page

__all__ = ["SynthConfig", "SynthPage", "SynthSplit", "derive_seed", "page_seed", "render_page", "synth_split"]


@dataclass(frozen=True)
class SynthPage:
    """A rendered page, the markdown of what it shows, and the seed that made it."""

    image: Image.Image
    markdown: str
    seed: int

    def png_bytes(self) -> bytes:
        """The image as PNG (lossless and, for the same pixels, the same bytes every time)."""
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def derive_seed(*parts: Union[int, str]) -> int:
    """A 64-bit seed from `parts`, stable across processes, machines and Python versions."""
    text = "forge-ocr-synth/" + "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def page_seed(base_seed: int, index: int) -> int:
    """The seed of page `index` of the split with `base_seed`."""
    return derive_seed(base_seed, index)


def render_page(config: SynthConfig, seed: int) -> SynthPage:
    """Draw the document of `seed`, lay out what fits, render it and degrade it by `config`'s
    noise. Raises ConfigError listing every problem when `config` does not validate."""
    _check(config)
    return _render(config, seed)


def _check(config: SynthConfig) -> None:
    problems = config.validate()
    if problems:
        raise ConfigError(problems)


def _render(config: SynthConfig, seed: int) -> SynthPage:
    document = generate_document(config, random.Random(seed))
    layout = layout_page(document, config)
    image = draw_page(layout, config)
    image = apply_noise(image, config, random.Random(derive_seed(seed, "noise")))
    if not config.grayscale:
        image = image.convert("RGB")
    return SynthPage(image=image, markdown=to_markdown(layout.blocks), seed=seed)


class SynthSplit(Sequence[SynthPage]):
    """`n` pages rendered on access (page `i` from `page_seed(base_seed, i)`), so a split of a
    million pages costs nothing until read and any page can be re-made alone, e.g. by a worker."""

    def __init__(self, config: SynthConfig, base_seed: int, n: int):
        if n < 0:
            raise ValueError(f"a split has n >= 0 pages, got {n}")
        _check(config)
        self.config, self.base_seed, self.n = config, base_seed, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> SynthPage: ...

    @overload
    def __getitem__(self, index: slice) -> list[SynthPage]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[SynthPage, list[SynthPage]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(f"page {index} of a split of {self.n}")
        index %= self.n
        return _render(self.config, page_seed(self.base_seed, index))


def synth_split(config: SynthConfig, base_seed: int, n: int) -> SynthSplit:
    """A lazy sequence of `n` pages; see SynthSplit. Validates `config` once, up front."""
    return SynthSplit(config, base_seed, n)
