"""Tesseract's row for the OCR benchmarks: edit similarity, exact match and ms/page on synthetic pages.

Two page sizes: `task` is task=ocr_synth's page (448x448, margin 24, font 14, 4 blocks: what the tiny
VLMs are trained and scored on), `full` is SynthConfig's default (768x1024, font 16, 12 blocks). Pages
come from `synth_split(config, base_seed, n)`, the same pages a model row of the same split sees.
Tesseract produces plain text, so exact match against markdown (headings, list markers, tables) is
expected to stay at 0; edit similarity is the number to compare. --keep-lines and --scale show the
layout choices `forge.ocr.tesseract` made (measured: joining a paragraph's lines, scale 2).

    python benchmarks/tesseract_baseline.py                          # 32 pages of each size, ~2 min
    python benchmarks/tesseract_baseline.py --sizes task --pages 8 --scale 1 --keep-lines
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forge.data.ocr.synth import SynthConfig, synth_split  # noqa: E402
from forge.ocr.baseline import tesseract_baseline  # noqa: E402
from forge.ocr.tesseract import DEFAULT_PSM, DEFAULT_SCALE  # noqa: E402

SIZES = {
    "task": SynthConfig(width=448, height=448, margin=24, font_size=14, blocks=4),
    "full": SynthConfig(),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["task", "full"])
    parser.add_argument("--pages", type=int, default=32)
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--lang", default="eng")
    parser.add_argument("--psm", type=int, default=DEFAULT_PSM)
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE)
    parser.add_argument("--keep-lines", action="store_true", help="keep Tesseract's line breaks in paragraphs")
    args = parser.parse_args(argv)
    print("| pages | size | edit similarity | exact match | ms/page | settings |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        config = SIZES[size]
        pages = [(p.image, p.markdown) for p in synth_split(config, base_seed=args.base_seed, n=args.pages)]
        score = tesseract_baseline(pages, lang=args.lang, psm=args.psm, scale=args.scale, keep_lines=args.keep_lines)
        m = score.metrics
        print(f"| {score.pages} | {size} {config.width}x{config.height} | {m['edit_similarity']:.4f} | "
              f"{m['exact_match']:.3f} | {score.ms_per_page:.0f} | {score.engine}, psm {args.psm}, scale "
              f"{args.scale:g}{', lines kept' if args.keep_lines else ''} |", flush=True)


if __name__ == "__main__":
    main()
