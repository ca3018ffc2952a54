"""Scan-like degradations of a rendered page: rotation, blur, speckle, JPEG re-encoding.

They change pixels only, never the document: the markdown of a noisy page equals that of the clean
one. Every random draw comes from the `random.Random` handed in (the page's noise stream), so a page
and its noise are fixed by the page seed. Applied in the order a scan degrades a page: the sheet is
tilted on the glass, the optics blur it, the sensor speckles it, and the file is saved as JPEG.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_render import INK, PAPER


def apply_noise(image: Image.Image, config: SynthConfig, rng: random.Random) -> Image.Image:
    """The greyscale ("L") `image` degraded as `config` asks; the same object when all noise is off."""
    # each draw happens whether or not its noise is on, so turning one noise on or off leaves the
    # random values of the others unchanged.
    angle = rng.uniform(-1.0, 1.0) * config.max_rotation_deg
    speckle_seed = rng.getrandbits(64)
    if config.max_rotation_deg > 0:
        # bilinear: half bicubic's time on a page, and a tilted scan is soft anyway
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=PAPER)
    if config.blur_radius > 0:
        image = image.filter(ImageFilter.GaussianBlur(config.blur_radius))
    if config.speckle > 0:
        image = speckle(image, config.speckle, speckle_seed)
    if config.jpeg_quality is not None:
        image = jpeg_roundtrip(image, config.jpeg_quality)
    return image


def speckle(image: Image.Image, amount: float, seed: int) -> Image.Image:
    """Salt and pepper: a fraction `amount` of pixels set to paper or ink, half each."""
    generator = np.random.default_rng(seed)
    pixels = np.array(image)
    draws = generator.random(pixels.shape)
    pixels[draws < amount / 2] = INK
    pixels[(draws >= amount / 2) & (draws < amount)] = PAPER
    return Image.fromarray(pixels)


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """`image` saved as JPEG at `quality` and read back, with its block and ringing artefacts."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    decoded = Image.open(buffer)
    decoded.load()
    return decoded.convert(image.mode)
