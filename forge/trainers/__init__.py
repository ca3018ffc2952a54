"""Thin `transformers.Trainer` subclasses. They receive loss/teacher objects and never do loss math
themselves beyond adding CE + alpha · distillation."""

from forge.trainers.components import TrainingComponents
from forge.trainers.distillation import DistillationModule, DistillationTrainer
from forge.trainers.finetuning import FinetuningTrainer

__all__ = ["TrainingComponents", "FinetuningTrainer", "DistillationTrainer", "DistillationModule"]
