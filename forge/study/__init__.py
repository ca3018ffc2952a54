"""The FAR study report: read a sweep's run directories back and write study.md / study.csv /
study.json and figures (per-arm means with 95% intervals, gains over `ce`, the 2x2x2 factorial
effects of feature, attention and response distillation, learning curves).

    python -m forge.study outputs/sweeps/far_study/<timestamp>  [--out DIR] [--metric KEY]

Modules, one job each: `grid` (the jobs a sweep asked for, from multirun.yaml), `factors` (which
families a run's loss switches on), `runs` (read run directories, collect unusable runs), `stats`
(bootstrap and t intervals, paired gains, factorial effects), `summary` (per-arm numbers),
`plots`, `report` (the files), `hydra_callback` (the report at the end of a multirun).
"""

from forge.study.report import ReportFiles, write_report
from forge.study.runs import NoRunsError

__all__ = ["NoRunsError", "ReportFiles", "write_report"]
