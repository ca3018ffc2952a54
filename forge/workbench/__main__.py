"""`python -m forge.workbench RUN_DIR|SWEEP_DIR [--against RUN_DIR] [--analyses probe,cka,disagreement,head]`.

A run directory: its analyses into RUN_DIR/workbench/ (or --out). A sweep directory: every finished
run analysed (a run whose workbench.json exists is reused unless --redo), then the aggregate view
(`forge.workbench.sweep`) into the sweep directory (or --out).

Exit codes: 0 written; 2 bad input (no such path, not a run or sweep directory, a run without
final/, an unknown analysis or pooling), said in one line without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from forge.config.errors import ForgeFailure
from forge.workbench.cka import POOLINGS
from forge.workbench.report import JSON_NAME, WORKBENCH_DIR, run_workbench, unknown_analyses
from forge.workbench.subjects import WorkbenchSettings

DEFAULT_ANALYSES = "probe,cka,disagreement,head"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m forge.workbench",
        description="What did the student learn? Linear probes per layer, teacher x student CKA with the training "
                    "layer map, student-teacher disagreement and head fine-tuning, from run directories only.")
    parser.add_argument("path", type=Path, help="a run directory, or a sweep directory holding run directories")
    parser.add_argument("--against", type=Path, default=None, help="another run to compare with (e.g. plain SFT)")
    parser.add_argument("--analyses", default=DEFAULT_ANALYSES, help=f"comma-separated (default: {DEFAULT_ANALYSES})")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: RUN_DIR/workbench)")
    parser.add_argument("--pooling", default=None, choices=POOLINGS,
                        help="cls | mean | last | tokens (default: cls for classifiers, last for decoders)")
    parser.add_argument("--max-train", type=int, default=2000, help="training examples the probes and heads fit on")
    parser.add_argument("--max-eval", type=int, default=1000, help="eval examples scored")
    parser.add_argument("--head-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--biased-cka", action="store_true", help="linear (biased) CKA instead of debiased")
    parser.add_argument("--redo", action="store_true", help="sweep form: analyse runs that already have a workbench")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> WorkbenchSettings:
    return WorkbenchSettings(pooling=args.pooling, max_train=args.max_train, max_eval=args.max_eval,
                             head_steps=args.head_steps, seed=args.seed, debiased=not args.biased_cka)


def _sweep(root: Path, names: list[str], args: argparse.Namespace) -> int:
    from forge.study.runs import discover
    from forge.workbench.sweep_report import analyse_sweep

    runs, _ = discover(root)
    finished = [r for r in runs if (r / "final").is_dir()]
    print(f"forge.workbench: {len(finished)} finished runs of {len(runs)} under {root}")
    shared: dict = {}  # the arms' common teacher: its features are computed once
    for run in finished:
        if args.redo or not (run / WORKBENCH_DIR / JSON_NAME).is_file():
            run_workbench(run, names=names, settings=settings_of(args), shared=shared)
    for path in analyse_sweep(root, args.out or root).values():
        print(f"  wrote {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    names = [n.strip() for n in args.analyses.split(",") if n.strip()]
    unknown = unknown_analyses(names)
    if unknown or not names:
        from forge.workbench.analyses import analyses

        print(f"forge.workbench: unknown analysis {unknown or args.analyses!r}; valid: {', '.join(analyses())}",
              file=sys.stderr)
        return 2
    if not args.path.is_dir():
        print(f"forge.workbench: {args.path} does not exist or is not a directory", file=sys.stderr)
        return 2
    try:
        if not (args.path / "config.yaml").is_file():
            return _sweep(args.path, names, args)
        result = run_workbench(args.path, names=names, settings=settings_of(args), against=args.against,
                               out_dir=args.out)
    except (ForgeFailure, ValueError) as err:
        print(f"forge.workbench: {err}", file=sys.stderr)
        return 2
    out = args.out or args.path / WORKBENCH_DIR
    print(f"forge.workbench: wrote {out / 'workbench.md'}, {out / JSON_NAME} and {len(result['figures'])} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
