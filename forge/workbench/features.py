"""Frozen features of a model on a run's data: one pooled matrix per layer, plus what each example is.

Which tokens a model is read at, and which label a probe predicts, depend on the task family; a
`FeatureView` says both, so the analyses never switch on a task's name:

- `ClassificationView` (GLUE): the whole input; the probe's label is the gold class.
- `PromptView` (decoders: translation; vision-language pages): the prompt only, as the model sees it
  before writing (the prompt of a page carries its image, so a VLM's *language* layers are read with
  its pixels). The probe's label is the **length bucket of the target** (terciles of its token
  count over the training set). Why that label: a decoder must plan how much to write from the
  source alone, so a layer that linearly encodes the target's length carries information about the
  source's content that the task needs; it is defined by the data, needs no annotation, and its
  chance level (1/3) is known.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from forge.data.base import model_inputs
from forge.decoding.vision import vision_inputs
from forge.workbench.cka import pooled_features

#: prompt-side batch keys of the prompt → completion collators (`forge.data.causal_collate`)
PROMPT_IDS, PROMPT_MASK = "prompt_input_ids", "prompt_attention_mask"
LENGTH_BUCKETS = 3


@dataclass
class Features:
    """A model's features on one dataset. layers[i]: (n, d) pooled hidden states of hidden-state
    index i (0 = embeddings). logits: (n, classes) for a classifier, else None. types: each
    example's control-task type (`control_types`). lengths: real input tokens."""

    layers: list[np.ndarray]
    logits: Optional[np.ndarray]
    types: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def num_layers(self) -> int:
        """Transformer blocks (the hidden-state indices run 0..num_layers)."""
        return len(self.layers) - 1


class FeatureView:
    """Where a model is read and what a probe predicts (see the module docstring)."""

    default_pooling = "mean"
    probe_label = ""

    def inputs(self, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        """The forward's inputs and the mask of the real tokens read."""
        raise NotImplementedError

    def probe_metric(self, handler: Any) -> tuple[Optional[str], Optional[Callable[[Any, Any], float]]]:
        """The task metric a probe's predictions are also scored by (name, function), or (None, None)
        when the probe's label is not the task's (accuracy only)."""
        return None, None

    def labels(self, dataset: Any, reference: Any) -> np.ndarray:
        """The probe's label per example of `dataset` (`reference`: the training set, which fixes
        any bucket edges so train and eval share them)."""
        raise NotImplementedError


class ClassificationView(FeatureView):
    default_pooling = "cls"
    probe_label = "the gold class"

    def inputs(self, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        inputs = {k: v for k, v in model_inputs(batch).items() if k != "labels"}
        return inputs, inputs["attention_mask"]

    def labels(self, dataset: Any, reference: Any) -> np.ndarray:
        return np.asarray(dataset["label"], dtype=np.int64)

    def probe_metric(self, handler: Any) -> tuple[Optional[str], Optional[Callable[[Any, Any], float]]]:
        from forge.eval.metrics import classification_metrics

        name = handler.primary_metric
        return name, lambda y_true, y_pred: classification_metrics(list(y_pred), list(y_true), which=[name])[name]


class PromptView(FeatureView):
    default_pooling = "last"
    probe_label = f"the target's length bucket ({LENGTH_BUCKETS} training-set quantiles of its tokens)"

    def inputs(self, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        vision = vision_inputs(batch)  # a page prompt's pixels and which prompt positions are image tokens
        extra = vision.model_kwargs() if vision is not None else {}
        return {"input_ids": batch[PROMPT_IDS], "attention_mask": batch[PROMPT_MASK], **extra}, batch[PROMPT_MASK]

    def labels(self, dataset: Any, reference: Any) -> np.ndarray:
        lengths = _completion_lengths(dataset)
        edges = np.quantile(_completion_lengths(reference), np.linspace(0, 1, LENGTH_BUCKETS + 1)[1:-1])
        return np.searchsorted(edges, lengths, side="right").astype(np.int64)


def _completion_lengths(dataset: Any) -> np.ndarray:
    from forge.data.causal_collate import COMPLETION

    return np.asarray([len(ids) for ids in dataset[COMPLETION]], dtype=np.float64)


VIEWS: dict[str, type[FeatureView]] = {"classification": ClassificationView, "causal_lm": PromptView,
                                       "vision_lm": PromptView}


def view_for(model_kind: str) -> FeatureView:
    """The view of a handler's model kind (a new family adds its view here)."""
    if model_kind not in VIEWS:
        raise ValueError(f"the workbench has no feature view for model kind {model_kind!r} "
                         f"(known: {', '.join(VIEWS)})")
    return VIEWS[model_kind]()


@torch.no_grad()
def extract(model: torch.nn.Module, dataset: Any, collator: Callable[[list[dict]], dict[str, Any]], view: FeatureView,
            *, pooling: str, batch_size: int = 32, progress: Optional[Callable[[int], None]] = None) -> Features:
    """Every layer's pooled features of `model` on `dataset` (in order), at real tokens only."""
    model.eval()
    device = next(model.parameters()).device
    layers: list[list[np.ndarray]] = []
    logits: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    lengths: list[int] = []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        inputs, mask = view.inputs(collator(rows))
        out = model(**_accepted(model, inputs, device), output_hidden_states=True)
        hidden = _language_hidden_states(out)
        layers = layers or [[] for _ in hidden]
        for i, h in enumerate(hidden):
            layers[i].append(pooled_features(h, mask.to(h.device), pooling))
        if out.logits.ndim == 2:  # a classifier's class scores (a decoder's are per position: not read)
            logits.append(out.logits.float().cpu().numpy())
        heads.append(_leading_real_tokens(inputs["input_ids"], mask))
        lengths += mask.sum(dim=1).tolist()
        if progress is not None:
            progress(len(rows))
    return Features(layers=[np.concatenate(parts) for parts in layers],
                    logits=np.concatenate(logits) if logits else None,
                    types=control_types(np.concatenate(heads)), lengths=np.asarray(lengths, dtype=np.int64))


def _accepted(model: torch.nn.Module, inputs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The inputs `model.forward` takes, on its device (a DistilBERT student takes no token_type_ids
    that its teacher's BERT tokenizer wrote)."""
    params = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items() if takes_any or k in params}


def _language_hidden_states(out: Any) -> Sequence[torch.Tensor]:
    """The text model's hidden states (a VLM's vision tower reports its own apart)."""
    hidden = out.hidden_states
    if hidden is None:
        raise ValueError("the model returned no hidden states (output_hidden_states=True was ignored)")
    return hidden


HEAD_TOKENS = 64


def _leading_real_tokens(ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(batch, HEAD_TOKENS) the first real token ids of each row, -1 past its end."""
    out = np.full((ids.shape[0], HEAD_TOKENS), -1, dtype=np.int64)
    for row in range(ids.shape[0]):
        real = ids[row][mask[row] == 1][:HEAD_TOKENS].tolist()
        out[row, :len(real)] = real
    return out


def control_types(heads: np.ndarray) -> np.ndarray:
    """Each example's type for the control task (Hewitt & Liang 2019 assign a random label per word
    type; a sentence task needs a type that recurs across examples): its first token after the
    prefix every example shares ([CLS], a chat template's header). The first content token recurs
    (many sentences start with "the") but says little about the label, so a probe that scores
    well on control labels is memorising types, which is what selectivity exposes."""
    if len(heads) == 0:
        return np.zeros(0, dtype=np.int64)
    shared = 0
    while shared < heads.shape[1] - 1 and (heads[:, shared] == heads[0, shared]).all():
        shared += 1
    return heads[:, shared].copy()
