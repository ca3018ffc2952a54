"""One run's workbench: run the analyses asked for and write workbench.md, workbench.json and figures.

Files are written whole or not at all (JSON atomically, markdown through a temporary file), and
workbench.json last: a directory with a workbench.json holds a complete analysis.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from forge.runtime.rundir import write_json_atomic
from forge.workbench.analyses import Section, analyses
from forge.workbench.subjects import Subjects, WorkbenchSettings

log = logging.getLogger(__name__)

WORKBENCH_DIR = "workbench"
JSON_NAME, MD_NAME = "workbench.json", "workbench.md"


def unknown_analyses(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in analyses()]


def run_workbench(run_dir: Path, *, names: Sequence[str], settings: WorkbenchSettings,
                  against: Optional[Path] = None, out_dir: Optional[Path] = None,
                  shared: Optional[dict] = None) -> dict[str, Any]:
    """Analyse one run (and `against`); returns what workbench.json holds. `shared`: a dict kept
    across the runs of a sweep, in which the common teacher's features are computed once."""
    subjects = Subjects.open(run_dir, settings, against, shared=shared)
    out = Path(out_dir) if out_dir is not None else subjects.run.layout.root / WORKBENCH_DIR
    out.mkdir(parents=True, exist_ok=True)
    registry = analyses()
    sections: dict[str, Section] = {}
    for name in names:
        log.info("Workbench: %s", registry[name].title)
        sections[name] = registry[name].run(subjects, out)
    result = _header(subjects) | {name: section.data for name, section in sections.items()}
    result["figures"] = {k: str(p.relative_to(out)) for s in sections.values() for k, p in s.figures.items()}
    _write_text(out / MD_NAME, render(result, sections, registry))
    write_json_atomic(out / JSON_NAME, result)
    log.info("Workbench written to %s", out)
    return result


def _header(subjects: Subjects) -> dict[str, Any]:
    cfg, info = subjects.run.config, subjects.data().info
    return {"run": str(subjects.run.layout.root), "against": None if subjects.against is None else
            str(subjects.against.layout.root), "task": cfg.task.name, "mode": cfg.mode.name,
            "arm": cfg.loss.get("name"), "seed": int(cfg.seed), "teacher_from": subjects.teacher_source(),
            "primary_metric": f"{subjects.eval_set_name()}/{info.get('primary_metric')}",
            "greater_is_better": info.get("greater_is_better", True), "pooling": subjects.pooling,
            "examples": {"train": len(subjects.split("train")), "eval": len(subjects.split("eval"))}}


def render(result: dict[str, Any], sections: dict[str, Section], registry: dict[str, Any]) -> str:
    lines = [f"# Workbench: {Path(result['run']).name}", "",
             f"Run `{result['run']}` (task {result['task']}, mode {result['mode']}, loss {result['arm']}, "
             f"seed {result['seed']})" + (f", against `{result['against']}`" if result["against"] else "") + ".",
             f"Teacher: {result['teacher_from'] or 'none'}. Examples read: {result['examples']['train']} train "
             f"(probes and heads are fitted on them), {result['examples']['eval']} eval.", ""]
    for name, section in sections.items():
        lines += [f"## {registry[name].title}", "", *section.lines, ""]
        lines += [f"![{key}]({path.name})" for key, path in section.figures.items()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
