"""The models a workbench compares, read from run directories only, and their features (computed once).

- `teacher`: the run's teacher as the run distilled from it (a frozen fine-tuned teacher included),
  or, for a run without one (SFT), the teacher of the `--against` run when that has one;
- `student`: the run's `final/`;
- `initial`: the student as the run built it before training (rebuilt from the run's config and
  seed: the same recipe, the same head draw), so alignment can be measured before and after;
- `against`: another run's `final/` (`--against`), e.g. the plain `ce`/SFT student.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from tqdm.auto import tqdm

from forge.run_view import RunView, open_run
from forge.workbench.features import FeatureView, Features, extract, view_for

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")


@dataclass
class WorkbenchSettings:
    """pooling: cls | mean | last | tokens (None: the task family's default). max_train/max_eval:
    examples read per split (probes train on `train`, everything is scored on `eval`)."""

    pooling: Optional[str] = None
    max_train: int = 2000
    max_eval: int = 1000
    batch_size: int = 32
    seed: int = 0
    head_steps: int = 300
    top_k: int = 5
    debiased: bool = True
    cka_batch_size: Optional[int] = 256


@dataclass
class Subjects:
    """Models by name, the run's data and view, and their features per split (see the module docstring)."""

    run: RunView
    settings: WorkbenchSettings
    against: Optional[RunView] = None
    _models: dict[str, Optional[torch.nn.Module]] = field(default_factory=dict)
    _features: dict[tuple[str, str], Features] = field(default_factory=dict)
    _data: Any = None
    _teacher_from: Optional[str] = None
    _teacher_weights: Optional[str] = None
    #: features shared across the Subjects of one process (`_shared_key`); None: nothing shared
    shared: Optional[dict[tuple, Features]] = None

    @classmethod
    def open(cls, run_dir: Path, settings: WorkbenchSettings, against: Optional[Path] = None,
             shared: Optional[dict[tuple, Features]] = None) -> "Subjects":
        return cls(open_run(run_dir), settings, open_run(against) if against is not None else None, shared=shared)

    # ---- what is compared ---------------------------------------------------------------------

    @property
    def view(self) -> FeatureView:
        return view_for(self.run.handler().model_kind)

    @property
    def pooling(self) -> str:
        return self.settings.pooling or self.view.default_pooling

    def names(self) -> list[str]:
        """Students first (the run's, the other run's), then the teacher when there is one."""
        names = ["student"] + (["against"] if self.against is not None else [])
        return names + (["teacher"] if self.model("teacher") is not None else [])

    def model(self, name: str) -> Optional[torch.nn.Module]:
        if name not in self._models:
            self._models[name] = self._load(name)
        return self._models[name]

    def _load(self, name: str) -> Optional[torch.nn.Module]:
        log.info("Workbench: loading the %s", name)
        if name == "student":
            return self.run.student()
        if name == "against":
            return self.against.student() if self.against is not None else None
        if name == "initial":
            return self.run.initial_student()
        teacher, self._teacher_from = self.run.teacher(), str(self.run.layout.root)
        if teacher is None and self.against is not None:
            teacher, self._teacher_from = self.against.teacher(), str(self.against.layout.root)
        return teacher

    def teacher_source(self) -> Optional[str]:
        """The run directory whose teacher is compared with (None: no teacher)."""
        return self._teacher_from if self.model("teacher") is not None else None

    # ---- data and features --------------------------------------------------------------------

    def data(self) -> Any:
        if self._data is None:
            self._data = self.run.data()
        return self._data

    def split(self, split: str) -> Any:
        """The examples read for `split` (a seeded subset of at most max_<split>)."""
        from forge.data.base import sample_indices

        data = self.data()
        dataset = data.train if split == "train" else next(iter(data.eval_sets.values()))
        cap = self.settings.max_train if split == "train" else self.settings.max_eval
        indices = sorted(sample_indices(len(dataset), cap, self.settings.seed))
        return dataset.select(indices) if hasattr(dataset, "select") else [dataset[i] for i in indices]

    def eval_set_name(self) -> str:
        return next(iter(self.data().eval_sets))

    def features(self, name: str, split: str) -> Features:
        key = (name, split)
        if key not in self._features:
            dataset = self.split(split)
            shared_key = self._shared_key(name, split, dataset)
            if shared_key is not None and shared_key in self.shared:
                self._features[key] = self.shared[shared_key]
                return self._features[key]
            model = self.model(name)
            assert model is not None, name
            with tqdm(total=len(dataset), desc=f"features: {name} on {split}", unit="ex", leave=False) as bar:
                feats = extract(model, dataset, self.data().collator, self.view, pooling=self.pooling,
                                batch_size=self.settings.batch_size, progress=bar.update)
            feats.labels = self.view.labels(dataset, self.split("train"))
            self._features[key] = feats
            if shared_key is not None:
                self.shared[shared_key] = feats
        return self._features[key]

    def _shared_key(self, name: str, split: str, dataset: Any) -> Optional[tuple]:
        """The teacher's features are shared between the runs of a sweep (every arm distils from the
        same teacher), keyed by its weights and the examples read, so they are computed once."""
        if name != "teacher" or self.shared is None:
            return None
        from forge.teachers.cache.fingerprint import dataset_fingerprint, model_input_columns, state_dict_fingerprint

        if self._teacher_weights is None:
            self._teacher_weights = state_dict_fingerprint(self.model("teacher"))
        inputs = dataset_fingerprint(dataset, model_input_columns(dataset, ("input_ids", "prompt_input_ids", "label")))
        return self._teacher_weights, split, self.pooling, inputs
