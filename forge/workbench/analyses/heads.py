"""Head fine-tuning: is the student short of capacity, or of alignment?

The body is frozen and a fresh linear head is trained on its last layer's pooled features (the
position the model's own head reads) for `head_steps` seeded AdamW steps, on the student's body and
on the teacher's. Then, with `teacher` the teacher's own score and `new head` the re-trained heads:

- *capacity*: even the teacher's features with a new head fall short of the teacher (by more than
  the tolerance): a head of this size cannot carry what the teacher does, so no student of this
  shape can be expected to close the gap through its features alone;
- *alignment*: the teacher's features with a new head reach the teacher but the student's do not:
  the student's features are the bottleneck, which is what feature / attention distillation targets;
- *head*: the student's features with a new head reach the teacher's features with a new head: the
  features suffice and the gap (if any) is in how the student's own head was trained.

Written by hand because it is a few lines of torch over cached features; a library would add a
second training loop to configure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from forge.runtime.seeds import seeded
from forge.workbench.analyses import Section, skipped, without_teacher
from forge.workbench.subjects import Subjects

TOLERANCE = 0.01  # of the primary metric: differences below it are not called a gap
BATCH = 64


def train_head(train_x: np.ndarray, train_y: np.ndarray, num_labels: int, *, steps: int, seed: int,
               lr: float = 1e-2) -> Callable[[np.ndarray], np.ndarray]:
    """A fresh linear head on standardised frozen features; returns its predict(x) -> labels."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = torch.as_tensor((train_x - mean) / std, dtype=torch.float32)
    y = torch.as_tensor(train_y, dtype=torch.long)
    with seeded(seed):
        head = torch.nn.Linear(x.shape[1], num_labels)
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-2)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (min(BATCH, len(x)),), generator=order)
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.as_tensor((features - mean) / std, dtype=torch.float32)).argmax(1).numpy()

    return predict


def diagnosis(teacher: float, teacher_new_head: float, student_new_head: float,
              tolerance: float = TOLERANCE) -> str:
    """capacity | alignment | head (the module docstring), for a greater-is-better metric."""
    if teacher_new_head < teacher - tolerance:
        return "capacity"
    if student_new_head < teacher_new_head - tolerance:
        return "alignment"
    return "head"


class HeadAnalysis:
    name = "head"
    title = "Head fine-tuning"

    def run(self, subjects: Subjects, out_dir: Path) -> Section:
        if subjects.pooling == "tokens":
            return skipped("a head reads one feature vector per example; pooling=tokens gives one row per token (use cls, mean or last)")
        missing = without_teacher(subjects)
        if missing is not None:
            return missing
        if subjects.features("teacher", "eval").logits is None:
            return skipped("head fine-tuning re-trains a classifier's task head; a decoder's LM head is its output "
                           "vocabulary, not a task head")
        metric_name, metric = subjects.view.probe_metric(subjects.run.handler())
        assert metric is not None
        s = subjects.settings
        scores: dict[str, dict[str, float]] = {}
        for name in subjects.names():
            train, evaluation = subjects.features(name, "train"), subjects.features(name, "eval")
            k = evaluation.logits.shape[1]
            predict = train_head(train.layers[-1], train.labels, k, steps=s.head_steps, seed=s.seed)
            scores[name] = {"own_head": metric(evaluation.labels, evaluation.logits.argmax(1)),
                            "new_head": metric(evaluation.labels, predict(evaluation.layers[-1]))}
        verdicts = {name: diagnosis(scores["teacher"]["own_head"], scores["teacher"]["new_head"], row["new_head"])
                    for name, row in scores.items() if name != "teacher"}
        data = {"metric": metric_name, "steps": s.head_steps, "seed": s.seed, "tolerance": TOLERANCE,
                "scores": scores, "diagnosis": verdicts}
        return Section(data, _lines(data))


def _lines(data: dict[str, Any]) -> list[str]:
    metric = data["metric"]
    lines = [f"A fresh linear head on each frozen body's last layer ({data['steps']} AdamW steps, seed "
             f"{data['seed']}); {metric} on the eval examples.", "",
             "| model | own head | new head on frozen body |", "|---|---|---|"]
    lines += [f"| {name} | {row['own_head']:.4f} | {row['new_head']:.4f} |" for name, row in data["scores"].items()]
    lines.append("")
    explain = {"capacity": "even the teacher's features with a new head fall short of the teacher",
               "alignment": "the teacher's features with a new head reach the teacher, the student's do not: "
                            "the student's features are the bottleneck",
               "head": "the student's features with a new head do as well as the teacher's: the features suffice"}
    lines += [f"- **{name}: {verdict}**: {explain[verdict]} (tolerance {data['tolerance']})."
              for name, verdict in data["diagnosis"].items()]
    return lines
