"""`python -m forge.study SWEEP_DIR [--out DIR] [--metric KEY]`: write the study report.

Exit codes: 0 written; 2 the path does not exist or holds no run directory (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from forge.study.report import write_report
from forge.study.runs import NoRunsError


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m forge.study",
        description="Summarise a FAR study (a sweep's run directories): per-arm means with 95%% intervals, "
                    "gains over ce, 2x2x2 factorial effects, learning curves, failed and missing runs.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, or any directory holding run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: SWEEP_DIR)")
    parser.add_argument("--metric", default=None,
                        help="metric key, e.g. validation/f1 (default: the runs' primary metric)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"forge.study: {args.sweep_dir} does not exist or is not a directory", file=sys.stderr)
        return 2
    try:
        files = write_report(args.sweep_dir, args.out, args.metric, source=str(args.sweep_dir))
    except NoRunsError as err:
        print(f"forge.study: {err}; pass a sweep directory such as outputs/sweeps/far_study/<timestamp>",
              file=sys.stderr)
        return 2
    study = files.analysis.study
    print(f"forge.study: {len(study.records)} finished runs in {len(files.analysis.arms)} arms, "
          f"{len(study.problems)} not usable (listed in the report)")
    for path in (files.markdown, files.csv, files.json, *files.figures.values()):
        print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
