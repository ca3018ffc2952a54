"""Where does the student deviate from the teacher?

Classification: the examples where the student's prediction differs from the teacher's, broken down
by gold label, teacher confidence, input length and whether the teacher was right; the teacher ×
student confusion; the most confident disagreements with their text (`forge.workbench.disagreement`).
Decoders: both models translate the same eval prompts (greedy, the task's own decoding); the
sentence-level chrF of the student's output against the teacher's, and the worst sentences.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forge.workbench.analyses import Section, without_teacher
from forge.workbench.disagreement import DisagreementTable, disagreement_table, translation_disagreement
from forge.workbench.subjects import Subjects

#: eval prompts translated by each model (generation is the slow part of this analysis)
MAX_GENERATED = 64


class DisagreementAnalysis:
    name = "disagreement"
    title = "Student-teacher disagreement"

    def run(self, subjects: Subjects, out_dir: Path) -> Section:
        missing = without_teacher(subjects)
        if missing is not None:
            return missing
        if subjects.features("teacher", "eval").logits is None:
            return self._generated(subjects)
        return self._classified(subjects)

    def _classified(self, subjects: Subjects) -> Section:
        teacher = subjects.features("teacher", "eval")
        probs = _softmax(teacher.logits)
        names = subjects.data().info.get("label_names") or [str(i) for i in range(probs.shape[1])]
        dataset = subjects.split("eval")
        texts = list(dataset["text"]) if "text" in getattr(dataset, "column_names", []) else None
        data: dict[str, Any] = {}
        lines: list[str] = []
        for name in [n for n in subjects.names() if n != "teacher"]:
            student = subjects.features(name, "eval")
            table = disagreement_table(student.logits.argmax(1), probs.argmax(1), teacher.labels, probs.max(1),
                                       student.lengths, label_names=names)
            top = table.top_k(subjects.settings.top_k, texts)
            data[name] = _table_json(table) | {"top": [asdict(d) for d in top]}
            lines += _table_lines(name, table, top)
        return Section(data, lines)

    def _generated(self, subjects: Subjects) -> Section:
        dataset = subjects.split("eval")
        n = min(len(dataset), MAX_GENERATED)
        rows = [dataset[i] for i in range(n)]
        outputs = {name: _generate(subjects, name, rows) for name in subjects.names()}
        sources = [str(r.get("source", "")) for r in rows]
        data: dict[str, Any] = {"examples": n}
        lines = [f"Greedy outputs on {n} eval prompts; sentence chrF of each student's output against the teacher's.", ""]
        for name in [m for m in outputs if m != "teacher"]:
            result = translation_disagreement(outputs[name], outputs["teacher"], sources)
            worst = result.worst(subjects.settings.top_k)
            data[name] = {"mean_chrf_vs_teacher": result.mean, "worst": [asdict(w) for w in worst]}
            lines += [f"**{name}**: mean sentence chrF vs the teacher {result.mean:.2f}. Worst:", ""]
            lines += [f"- chrF {w.chrf:.1f}: `{(w.source or '')[:80]}` → student `{w.student[:80]}` / teacher `{w.teacher[:80]}`"
                      for w in worst] + [""]
        return Section(data, lines)


def _generate(subjects: Subjects, name: str, rows: list[dict]) -> list[str]:
    handler, collator = subjects.run.handler(), subjects.data().evaluation_collator
    model, size, out = subjects.model(name), subjects.settings.batch_size, []
    for start in range(0, len(rows), size):
        out += handler.predict(model, collator(rows[start:start + size]))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()


def _table_json(table: DisagreementTable) -> dict[str, Any]:
    rows = lambda group: [asdict(r) for r in group]  # noqa: E731
    return {"count": table.count, "disagreements": table.disagreements, "rate": table.rate,
            "by_gold": rows(table.by_gold), "by_teacher_confidence": rows(table.by_teacher_confidence),
            "by_length": rows(table.by_length), "by_teacher_correct": rows(table.by_teacher_correct),
            "confusion_teacher_x_student": table.confusion.tolist()}


def _table_lines(name: str, table: DisagreementTable, top: list) -> list[str]:
    lines = [f"**{name} vs teacher**: {table.disagreements} of {table.count} eval examples differ "
             f"({table.rate:.1%}).", "", "| breakdown | group | examples | disagreements | rate |", "|---|---|---|---|---|"]
    for label, group in (("gold", table.by_gold), ("teacher confidence", table.by_teacher_confidence),
                         ("input length", table.by_length), ("teacher vs gold", table.by_teacher_correct)):
        lines += [f"| {label} | {r.key} | {r.count} | {r.disagreements} | {'—' if r.rate is None else f'{r.rate:.1%}'} |"
                  for r in group]
    names = table.label_names
    lines += ["", "Confusion (rows: teacher, columns: student): " + "; ".join(
        f"{names[t]}→" + ", ".join(f"{names[s]} {int(c)}" for s, c in enumerate(row))
        for t, row in enumerate(table.confusion)), "", "Most confident disagreements:", ""]
    lines += [f"- #{d.index} (teacher {d.teacher} at {d.teacher_confidence:.2f}, student {d.student}, gold {d.gold}): "
              f"{(d.text or '')[:100]!r}" for d in top]
    return lines + [""]
