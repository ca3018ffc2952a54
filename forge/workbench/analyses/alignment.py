"""CKA between every teacher layer and every student layer, with the run's training layer map on it.

Which student layers align with which teacher layers, and does the map the feature / attention loss
trained on pair each student layer with its best-aligned teacher layer? The same matrix for the
student as the run built it (`initial`) shows what training changed. Features are the pooled
hidden states at real tokens of the eval examples (`forge.workbench.cka`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
from omegaconf import DictConfig

from forge.workbench.analyses import Section, skipped, without_teacher
from forge.workbench.cka import cka_matrix, layer_map_report
from forge.workbench.figures import cka_heatmap
from forge.workbench.subjects import Subjects


def training_layer_map(loss_cfg: DictConfig, student_layers: int, teacher_layers: int) -> tuple[list[tuple[int, int]], str]:
    """The (student, teacher) hidden-state pairs the run's feature (else attention) loss trained on,
    and where they came from; a run without such a loss gets the default uniform map (what an F arm
    of the same pair would use), said as such."""
    from forge.losses.layer_map import layer_pairs

    for part, first in (("feature", 0), ("attention", 1)):
        node = loss_cfg.get(part) if loss_cfg.get(part) is not None else (
            loss_cfg if loss_cfg.get("name") == part else None)
        if node is not None and "layer_map" in node:
            pairs = layer_pairs(node.get("layer_map"), student_layers, teacher_layers, first_index=first)
            return [(int(s), int(t)) for s, t in pairs], f"loss.{part}.layer_map of the run"
    return [(int(s), int(t)) for s, t in layer_pairs(None, student_layers, teacher_layers)], \
        "the default uniform map (this run trained no feature or attention loss)"


class CkaAnalysis:
    name = "cka"
    title = "Layer alignment (CKA)"

    def run(self, subjects: Subjects, out_dir: Path) -> Section:
        missing = without_teacher(subjects)
        if missing is not None:
            return missing
        s = subjects.settings
        teacher = subjects.features("teacher", "eval")
        students = [n for n in subjects.names() if n != "teacher"] + ["initial"]
        pairs, source = training_layer_map(subjects.run.config.loss, teacher_layers=teacher.num_layers,
                                           student_layers=subjects.features("student", "eval").num_layers)
        matrices, mapped = {}, {}
        for name in students:
            feats = subjects.features(name, "eval")
            if len(feats.layers[0]) != len(teacher.layers[0]):  # per token: the two tokenisations differ
                return skipped(f"pooling=tokens compares token rows, and the {name} read {len(feats.layers[0])} real "
                               f"tokens where the teacher read {len(teacher.layers[0])} (different tokenizers); "
                               "use --pooling cls, mean or last")
            matrix = cka_matrix(teacher.layers, feats.layers, debiased=s.debiased, batch_size=s.cka_batch_size)
            matrices[name] = matrix
            mapped[name] = [asdict(m) for m in layer_map_report(matrix, dict(pairs))]
        means = {name: _mean([m["cka"] for m in rows]) for name, rows in mapped.items()}
        figure = cka_heatmap(matrices["student"], pairs, out_dir / "cka_heatmap.png", debiased=s.debiased,
                             title=f"{'debiased' if s.debiased else 'linear'} CKA, teacher x student (final)")
        data = {"debiased": s.debiased, "pooling": subjects.pooling, "layer_map": pairs, "map_source": source,
                "matrix": {n: m.tolist() for n, m in matrices.items()}, "mapped": mapped, "mean_mapped_cka": means}
        return Section(data, _lines(data), {"cka_heatmap": figure})


def _mean(values: list[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _lines(data: dict[str, Any]) -> list[str]:
    kind = "Debiased (minibatch unbiased-HSIC)" if data["debiased"] else "Linear (biased)"
    lines = [f"{kind} CKA on pooled (`{data['pooling']}`) eval features. Layer map: {data['map_source']}.", "",
             "| student layer | teacher layer (mapped) | CKA final | best teacher layer (final) | mapped is best | CKA initial | change |",
             "|---|---|---|---|---|---|---|"]
    for final, initial in zip(data["mapped"]["student"], data["mapped"]["initial"]):
        change = final["cka"] - initial["cka"] if np.isfinite(final["cka"]) and np.isfinite(initial["cka"]) else None
        lines.append(f"| {final['student_layer']} | {final['teacher_layer']} | {final['cka']:.4f} | "
                     f"{final['best_teacher_layer']} ({final['best_cka']:.4f}) | {'yes' if final['is_best'] else 'no'} | "
                     f"{initial['cka']:.4f} | {'—' if change is None else f'{change:+.4f}'} |")
    means = data["mean_mapped_cka"]
    lines += ["", "Mean CKA over the mapped pairs: " + ", ".join(
        f"{name} {'—' if v is None else f'{v:.4f}'}" for name, v in means.items()) + "."]
    return lines
