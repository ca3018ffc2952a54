"""The workbench's analyses, each an object with a name (`--analyses probe,cka,...`).

An analysis reads `Subjects` (the models and their features) and returns a `Section`: what goes into
workbench.json, the lines of workbench.md, and its figures. A new analysis is its module and one
entry in `ANALYSES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

from forge.workbench.subjects import Subjects


@dataclass
class Section:
    """data: JSON-able results. lines: markdown. figures: name -> PNG path."""

    data: dict[str, Any]
    lines: list[str]
    figures: dict[str, Path] = field(default_factory=dict)


class Analysis(Protocol):
    name: str
    title: str

    def run(self, subjects: Subjects, out_dir: Path) -> Section: ...


def skipped(reason: str) -> Section:
    """A section for an analysis that cannot run on this run (said, not silently dropped)."""
    return Section({"skipped": reason}, [f"Skipped: {reason}."])


def without_teacher(subjects: Subjects) -> Optional[Section]:
    """The skipped section of an analysis that compares with a teacher, when there is none."""
    if "teacher" in subjects.names():
        return None
    return skipped("the run has no teacher (pass --against a run that has one)")


def analyses() -> dict[str, Analysis]:
    from forge.workbench.analyses.alignment import CkaAnalysis
    from forge.workbench.analyses.disagreements import DisagreementAnalysis
    from forge.workbench.analyses.heads import HeadAnalysis
    from forge.workbench.analyses.probing import ProbeAnalysis

    return {a.name: a for a in (ProbeAnalysis(), CkaAnalysis(), DisagreementAnalysis(), HeadAnalysis())}
