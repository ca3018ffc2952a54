"""`open_run(path)`: a finished or interrupted run, read back from its directory alone.

The entry point for the workbench and every later tool that looks at runs: the resolved config,
the status and the metrics as the run wrote them, and the run's pieces rebuilt the way the run
built them (the same handler, the same student recipe, the same teacher loader), so an analysis
sees exactly the student and the teacher the run saw:

    run = forge.open_run("outputs/sst2/minilm/kd/combined_far/2026-11-30_12-00-00")
    run.status, run.metrics["post"]["student"]
    data = run.data()                       # the task's eval sets and training data, tokenised
    student = run.student()                 # final/ (merged), or run.student(checkpoint=50)
    initial = run.initial_student()         # as the run built it before training
    teacher = run.teacher()                 # as the run distilled from it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from omegaconf import DictConfig, OmegaConf

from forge.config.errors import ForgeFailure
from forge.runtime.layout import RunLayout
from forge.runtime.rundir import read_json_object


class RunNotReadable(ForgeFailure):
    """The path is not a run directory, or the piece asked for is not in it."""


def open_run(path: Union[str, Path]) -> "RunView":
    """The run in `path` (a directory holding config.yaml); raises RunNotReadable otherwise."""
    layout = RunLayout(Path(path).expanduser())
    if not layout.is_run_dir():
        raise RunNotReadable(f"{layout.root} is not a run directory (no {layout.config.name}); point at a directory "
                             "written by forge.run, e.g. outputs/<task>/<model>/<mode>/<loss>/<timestamp>")
    return RunView(layout, OmegaConf.load(layout.config))


@dataclass
class RunView:
    """One run directory, read back (see the module docstring). Nothing here writes to it."""

    layout: RunLayout
    config: DictConfig
    _handler: Any = None
    _processor: Any = None

    # ---- what the run wrote -------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        return read_json_object(self.layout.metadata) or {}

    @property
    def status(self) -> str:
        """running | finished | failed | interrupted (as run_metadata.json says)."""
        return str(self.metadata.get("status", "unknown"))

    @property
    def metrics(self) -> Optional[dict[str, Any]]:
        """metrics.json (a finished run only), else None."""
        return read_json_object(self.layout.metrics)

    @property
    def pre_metrics(self) -> Optional[dict[str, Any]]:
        return read_json_object(self.layout.pre_metrics)

    @property
    def training_state(self) -> Optional[dict[str, Any]]:
        return read_json_object(self.layout.training_state)

    def checkpoints(self) -> list[Path]:
        """Complete (sealed) checkpoints, newest first."""
        from forge.runtime.checkpoints import checkpoint_dirs, verify

        return [p for p in checkpoint_dirs(self.layout.root) if verify(p, "size").ok]

    # ---- the run's pieces, rebuilt --------------------------------------------------------------

    def handler(self) -> Any:
        """The task's data handler, built from the run's config."""
        import hydra.utils

        if self._handler is None:
            self._handler = hydra.utils.instantiate(self.config.task, _convert_="all")
        return self._handler

    def processor(self) -> Any:
        """The student's processor: saved in final/ by a finished run, else from the model spec."""
        from forge.models.loading import load_processor

        if self._processor is None:
            kind = self.handler().model_kind
            final = self.layout.final
            spec = {"source": "local", "name_or_path": str(final)} if final.is_dir() else self.config.model.student
            self._processor = load_processor(spec, kind)
        return self._processor

    def data(self) -> Any:
        """The task's prepared data (train and eval sets), as the run prepared it."""
        context = self.config.teacher_strategy.get("context") if self._had_teacher() else None
        return self.handler().prepare(self.processor(), teacher_context=context)

    def score(self, model: Any, data: Any = None) -> dict[str, float]:
        """`model`'s metrics on the run's eval sets, through the task's own eval loop (as the run
        scored its teacher and student before and after training)."""
        import torch

        from forge.eval.loop import evaluate_model

        data = data if data is not None else self.data()
        device = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")
        batch_size = int(self.config.trainer.get("per_device_eval_batch_size") or 64)
        return evaluate_model(model.to(device), self.handler(), data.eval_sets, data.evaluation_collator,
                              batch_size=batch_size, device=device)

    def student(self, checkpoint: Union[None, int, str, Path] = None) -> Any:
        """The student: final/ (LoRA merged) by default, else a checkpoint (its step, or its path)
        loaded into the student rebuilt by the run's recipe."""
        if checkpoint is None:
            if not self.layout.final.is_dir():
                raise RunNotReadable(f"{self.layout.root} has no final/ (status {self.status}); pass "
                                     f"checkpoint=<step> (complete: {[p.name for p in self.checkpoints()]})")
            from forge.models.recipe import load_final

            return load_final(self.layout.final, self.handler().model_kind)
        return self._student_from(self._checkpoint_dir(checkpoint))

    def initial_student(self) -> Any:
        """The student as the run built it before its first step (the same recipe, LoRA included,
        and the same seed: its new head is the head the run started from)."""
        from forge.models.recipe import build_student, quantizer_of

        handler, spec = self.handler(), self.config.model.student
        return build_student(spec, self.processor(), kind=handler.model_kind, num_labels=handler.num_labels,
                             seed=int(self.config.seed), quantizer=quantizer_of(spec)).eval()

    def teacher(self) -> Any:
        """The teacher as the run distilled from it (None when the run had none)."""
        from forge.run_teacher import teacher_of

        return teacher_of(self) if self._had_teacher() else None

    # ---- helpers --------------------------------------------------------------------------------

    def _had_teacher(self) -> bool:
        mode = self.metadata.get("mode") or {}
        if "needs_teacher" in mode:
            return bool(mode["needs_teacher"])
        return bool(self.config.mode.get("requires_teacher", False))  # run dirs from before modes were objects

    def _checkpoint_dir(self, checkpoint: Union[int, str, Path]) -> Path:
        from forge.runtime.checkpoints import verify

        path = self.layout.checkpoint(checkpoint) if isinstance(checkpoint, int) else Path(checkpoint)
        if not verify(path, "size").ok:
            raise RunNotReadable(f"{path} is not a complete checkpoint of this run; complete ones: "
                                 f"{[p.name for p in self.checkpoints()]}")
        return path

    def _student_from(self, checkpoint: Path) -> Any:
        from forge.models.recipe import load_trained_weights

        return load_trained_weights(self.initial_student(), checkpoint, part="student").eval()


