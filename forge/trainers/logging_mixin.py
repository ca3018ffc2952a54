"""Per-component loss logging shared by Forge trainers.

`compute_loss` records named scalars (ce, distill, feature, attention, response, ...) every
micro-step; `log` replaces them with their mean since the last log, so the log history shows the
breakdown next to Trainer's own `loss`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch


class ComponentLoggingMixin:
    def _init_component_logging(self) -> None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        from forge.trainers.callbacks import LogMetricsCallback

        self._component_sums: dict[str, float] = defaultdict(float)
        self._component_counts: dict[str, int] = defaultdict(int)
        self.remove_callback(PrinterCallback)  # type: ignore[attr-defined]
        self.remove_callback(ProgressCallback)  # type: ignore[attr-defined]
        self.add_callback(LogMetricsCallback())  # type: ignore[attr-defined]

    def record_components(self, components: dict[str, Any]) -> None:
        for name, value in components.items():
            scalar = float(value.detach().float().mean()) if torch.is_tensor(value) else float(value)
            self._component_sums[name] += scalar
            self._component_counts[name] += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if "loss" in logs and self._component_counts:
            for name, total in self._component_sums.items():
                logs[f"loss/{name}"] = round(total / max(self._component_counts[name], 1), 6)
            self._component_sums.clear()
            self._component_counts.clear()
        super().log(logs, *args, **kwargs)  # type: ignore[misc]
