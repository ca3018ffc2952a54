"""Linear probes on frozen features, layer by layer, for the students and the teacher.

Where does task information emerge? Each layer's pooled features (embeddings included) feed an L2
logistic-regression probe whose regularisation is chosen on a held-out part of the training
examples (`forge.workbench.probes`). The control task (Hewitt & Liang 2019) re-assigns labels at
random per type; selectivity = accuracy − control accuracy, so a probe that scores by memorising is
visible as low selectivity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from forge.workbench.analyses import Section, skipped
from forge.workbench.figures import probe_curves
from forge.workbench.probes import probe_layers
from forge.workbench.subjects import Subjects


#: the control task needs types that recur and differ; page prompts, for one, are the same ids for
#: every page (the page is in the pixels), so their types are all one and no control is run
MIN_CONTROL_TYPES = 4


class ProbeAnalysis:
    name = "probe"
    title = "Linear probes"

    def run(self, subjects: Subjects, out_dir: Path) -> Section:
        if subjects.pooling == "tokens":
            return skipped("probes predict one label per example; pooling=tokens gives one row per token (use cls, mean or last)")
        metric_name, metric = subjects.view.probe_metric(subjects.run.handler())
        if metric_name == "accuracy":  # the probe's accuracy already: not a second column
            metric_name, metric = None, None
        curves: dict[str, list[dict[str, Any]]] = {}
        for name in subjects.names():
            train, evaluation = subjects.features(name, "train"), subjects.features(name, "eval")
            if len(np.unique(train.labels)) < 2:  # e.g. every target cut to the same length by max_length
                return skipped(f"the probe's label ({subjects.view.probe_label}) takes one value on the "
                               f"{len(train.labels)} training examples read")
            control = len(np.unique(train.types)) >= MIN_CONTROL_TYPES
            curves[name] = probe_layers(train.layers, train.labels, evaluation.layers, evaluation.labels,
                                        seed=subjects.settings.seed, metric=metric,
                                        control_types_train=train.types if control else None,
                                        control_types_eval=evaluation.types if control else None)
        best = {name: max(rows, key=lambda r: (r["metric"] if r["metric"] is not None else r["accuracy"]))
                for name, rows in curves.items()}
        figure = probe_curves(curves, out_dir / "probe_curves.png", label=subjects.view.probe_label)
        data = {"label": subjects.view.probe_label, "pooling": subjects.pooling, "metric": metric_name,
                "curves": curves, "best": best}
        return Section(data, _lines(data), {"probe_curves": figure})


def _lines(data: dict[str, Any]) -> list[str]:
    metric = data["metric"]
    lines = [f"Probe label: {data['label']}; pooling `{data['pooling']}`. Accuracy on the eval examples"
             + (f" (and {metric})" if metric else "") + ", control accuracy and selectivity per layer.", ""]
    header = "| model | layer | depth | accuracy |" + (f" {metric} |" if metric else "") + " control acc | selectivity | C |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for name, rows in data["curves"].items():
        for r in rows:
            cells = [name, str(r["layer"]), f"{r['depth']:.2f}", f"{r['accuracy']:.4f}"]
            if metric:
                cells.append(f"{r['metric']:.4f}")
            cells += [_num(r["control_accuracy"]), _num(r["selectivity"]), f"{r['chosen_c']:g}"]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, r in data["best"].items():
        lines.append(f"- Best {name} layer: {r['layer']} (depth {r['depth']:.2f}), accuracy {r['accuracy']:.4f}"
                     + (f", {metric} {r['metric']:.4f}" if metric else "") + f", selectivity {_num(r['selectivity'])}.")
    return lines


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"
