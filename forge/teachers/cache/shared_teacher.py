"""One fine-tuned frozen teacher per recipe, shared by every run that would fine-tune the same one.

frozen_sft fine-tunes the teacher on the task before distilling. Every arm and seed of a study
would otherwise pay for the same fine-tuning (a 200-step VLM teacher on pages: half an hour on two
cores) and, worse, could each get a slightly different teacher. So the sealed teacher lives under
the cache root (`teachers/<recipe>`), keyed by everything the fine-tuning reads:

- the teacher's spec, the task, the label names, the tokenizer;
- the training data's tokenised inputs and labels, and page images by their bytes together with
  the image processor's resize bounds (the same prompt ids can carry different pixels);
- the fine-tuning budget, the global batch, `teacher_strategy.seed`, the trainer settings that
  change an update, and the torch / transformers versions.

It is used whether or not the teacher's *signals* can be cached (`forge.teachers.cache.policy`):
a page task refuses the signal cache but still shares its fine-tuned teacher. One process
fine-tunes while the others wait on a file lock; the ranks of one job fine-tune together.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from forge.data.base import MODEL_INPUT_KEYS, PreparedData
from forge.data.page_collate import IMAGE
from forge.runtime.rundir import read_json, write_json_atomic
from forge.teachers.cache.fingerprint import (
    dataset_fingerprint, digest, model_input_columns, short, state_dict_fingerprint, tokenizer_fingerprint,
)
from forge.teachers.cache.lock import exclusive
from forge.teachers.cache.store import FORMAT_VERSION

log = logging.getLogger(__name__)

TEACHER_RECORD = "forge_teacher.json"
#: what a teacher's fine-tuning reads from each training example
RECIPE_COLUMNS = (*(k for k in MODEL_INPUT_KEYS if k != "labels"), "labels", "label", IMAGE)


def image_size_bounds(processor: Any) -> Optional[dict[str, Any]]:
    """The image processor's resize bounds (None for a text model): with the page bytes they fix
    the pixels the teacher is fine-tuned on."""
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    return dict(size) if size is not None else None


@dataclass
class SharedFinetunedTeacher:
    """The sealed fine-tuned teacher of this run's recipe (see the module docstring).

    finetune_into: fine-tunes a freshly loaded teacher and seals it into the given directory,
    calling `on_sealing(staged_dir, model)` before the seal; returns the model, or None when a
    stop signal interrupted it (`TeacherProvider.finetune_into`).
    """

    cfg: DictConfig
    data: PreparedData
    tokenizer: Any
    root: Path
    ranks: Any
    finetune_into: Callable[[Path, Callable[[Path, Any], None]], Optional[Any]]
    image_size: Optional[dict[str, Any]] = None
    #: the model this process fine-tuned (None when it was read from the store)
    model: Optional[Any] = None
    report: dict[str, Any] = field(default_factory=dict)

    def recipe_key(self) -> str:
        """What the fine-tuned teacher depends on (the module docstring's list), hashed."""
        from forge.runtime.metadata import package_versions
        from forge.teachers.strategy import teacher_seed

        ts, tr = self.cfg.teacher_strategy, self.cfg.trainer
        versions = package_versions()
        parts = {
            "format": FORMAT_VERSION,
            "teacher": OmegaConf.to_container(self.cfg.model.teacher, resolve=True),
            "task": self.cfg.task.name, "num_labels": getattr(self.data, "info", {}).get("label_names"),
            "data": dataset_fingerprint(self.data.train, model_input_columns(self.data.train, RECIPE_COLUMNS)),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            # the global batch: a fine-tuning over several ranks with the same global batch is the same recipe
            "finetune": {"steps": ts.finetune_steps, "lr": ts.finetune_learning_rate,
                         "batch": ts.finetune_batch_size * self.ranks.world_size, "seed": teacher_seed(self.cfg)},
            "trainer": {k: tr.get(k) for k in ("weight_decay", "lr_scheduler_type", "max_grad_norm",
                                                 "gradient_accumulation_steps", "bf16", "fp16")},
            "packages": {k: versions.get(k) for k in ("torch", "transformers")},
        }
        if self.image_size is not None:  # only page tasks: text recipes keep the keys they always had
            parts["image_size"] = self.image_size
        return digest(parts)

    def obtain(self) -> Path:
        """The sealed teacher's directory, fine-tuning it first if nobody has.

        Other jobs wait on the file lock; the ranks of this job follow rank 0's decision and
        fine-tune together (one data-parallel fine-tuning, sealed by rank 0)."""
        from forge.teachers.strategy import sealed_teacher

        key = self.recipe_key()
        path = self.root / "teachers" / short(key)
        main = self.ranks.is_main
        missing = lambda: self.ranks.share(sealed_teacher(path) is None if main else None)  # noqa: E731
        if missing():
            lock = exclusive(self.root / "teachers" / f".{short(key)}.lock", f"the fine-tuned teacher {path}") \
                if main else contextlib.nullcontext()
            with lock:
                if missing():  # another job may have sealed it while rank 0 waited
                    self._finetune(key, path)
        else:
            log.info("Reusing the fine-tuned teacher %s (same recipe)", path)
            self.report["teacher_finetune"] = "reused"
        self.report["teacher_dir"] = str(path)
        return path

    def weights_fingerprint(self, path: Path) -> str:
        """sha256 of the sealed teacher's weights, recorded when it was sealed."""
        return read_json(path / TEACHER_RECORD)["weights_sha256"]

    def _finetune(self, key: str, path: Path) -> None:
        t0 = time.monotonic()
        log.info("No teacher of this recipe is fine-tuned yet: fine-tuning it once into %s; every later run of "
                 "the same recipe reuses it (teacher_strategy.checkpoint=<a fine-tuned model dir> or "
                 "teacher_strategy=frozen_base skip the fine-tuning)", path)

        def record(staged: Path, model: Any) -> None:
            write_json_atomic(staged / TEACHER_RECORD, {"recipe_key": key, "weights_sha256": state_dict_fingerprint(model)})

        model = self.finetune_into(path, record)
        if model is None:
            raise InterruptedError("stopped while fine-tuning the shared teacher")
        self.model = model
        self.report.update(teacher_finetune="done now", teacher_finetune_s=round(time.monotonic() - t0, 2))
        log.info("Fine-tuned the shared teacher into %s", path)
