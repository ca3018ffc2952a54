"""A direct evaluation loop (no nested Trainer): batches → handler.predict → handler metrics.

The same loop scores teacher and student before and after training; it is task-agnostic because
the handler turns model outputs into predictions (argmax labels, generated text later).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader

from forge.data.base import TaskDataHandler


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    handler: TaskDataHandler,
    eval_sets: Mapping[str, Any],
    collator: Any,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Metrics for every eval set, flat as `<eval_set>/<metric>`. A quantized student's rounded
    weights are computed once for the whole evaluation (forge.models.quantized_inference)."""
    from forge.models.quantized_inference import rounded_weights_fixed

    was_training = model.training
    model.eval()
    try:
        with rounded_weights_fixed(model):
            return _evaluate_sets(model, handler, eval_sets, collator, batch_size, device)
    finally:
        model.train(was_training)


def _evaluate_sets(model: torch.nn.Module, handler: TaskDataHandler, eval_sets: Mapping[str, Any], collator: Any,
                   batch_size: int, device: torch.device | str) -> dict[str, float]:
    results: dict[str, float] = {}
    for set_name, dataset in eval_sets.items():
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
        predictions: list[Any] = []
        references: list[Any] = []
        for batch in loader:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            predictions.extend(handler.predict(model, batch))
            references.extend(handler.references(batch))
        metrics = {**handler.compute_metrics(predictions, references), **handler.model_metrics(model, set_name)}
        for metric, value in metrics.items():
            results[f"{set_name}/{metric}"] = float(value)
    return results


def primary_key(handler: TaskDataHandler, eval_sets: Mapping[str, Any]) -> str:
    """The headline metric: the handler's primary metric on its first eval set."""
    return f"{next(iter(eval_sets))}/{handler.primary_metric}"
