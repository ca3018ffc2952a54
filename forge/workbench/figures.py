"""The workbench's figures as PNG files (Agg canvas, never pyplot: safe headless and in tests, and
byte-identical when regenerated; the same convention as `forge.study.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def probe_curves(curves: dict[str, list[dict[str, Any]]], path: Path, *, label: str) -> Path:
    """Probe accuracy per layer, layer index normalised to depth (0 = embeddings, 1 = last block),
    every model on one plot; dotted: the control task's accuracy."""
    figure, ax = _figure(6.0, 4.0)
    for name, rows in curves.items():
        depth = [r["depth"] for r in rows]
        line = ax.plot(depth, [r["accuracy"] for r in rows], marker="o", label=f"{name} ({len(rows) - 1} layers)")[0]
        control = [r["control_accuracy"] for r in rows]
        if all(c is not None for c in control):
            ax.plot(depth, control, linestyle=":", color=line.get_color(), label=f"{name} control task")
    ax.set_xlabel("layer depth (0 = embeddings, 1 = last layer)")
    ax.set_ylabel("probe accuracy (eval)")
    ax.set_title(f"Linear probes: {label}", fontsize=9)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def cka_heatmap(matrix: np.ndarray, pairs: Sequence[tuple[int, int]], path: Path, *, debiased: bool,
                title: str) -> Path:
    """Teacher layers (rows) × student layers (columns), with the training layer map as boxes."""
    figure, ax = _figure(max(4.8, 1.6 + 0.55 * matrix.shape[1]), max(3.5, 1.0 + 0.45 * matrix.shape[0]))
    image = ax.imshow(matrix, origin="lower", aspect="auto", cmap="viridis", vmin=0.0 if not debiased else None)
    figure.colorbar(image, ax=ax, label="CKA")
    for student, teacher in pairs:
        ax.add_patch(_box(student, teacher))
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_xlabel("student hidden-state index (0 = embeddings)")
    ax.set_ylabel("teacher hidden-state index")
    ax.set_title(f"{title}\nboxes: the training layer map; blank: a constant layer (no CKA)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _box(column: int, row: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
