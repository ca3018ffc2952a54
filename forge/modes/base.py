"""A mode is an object: its config checks, what it needs from a teacher, its trainer and how that
trainer is built from the run's components.

`conf/mode/<name>.yaml` names the mode's class by `_target_`; `mode.trainer.*` holds the mode's own
settings (a dataclass it declares). The plan asks the mode for its problems and its teacher needs;
the pipeline asks it for its trainer. Nothing outside `forge/modes/` compares a mode's name, so a new
mode is its module, its YAML and its test.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional

from transformers import TrainingArguments

from forge.config.errors import ConfigProblem

if TYPE_CHECKING:
    from forge.teachers.cache.topk_store import TopKRequest


@dataclass(frozen=True)
class TeacherNeeds:
    """What a mode reads from its teacher.

    via: "model", the trainer runs the teacher's forward passes itself (a live model, or the
      teacher-signal cache standing in for it); "backend", it scores sequences through a
      `TeacherBackend` (in-process or a server).
    The flags name the outputs read; `missing_in(capabilities)` lists those a backend lacks.
    """

    via: str = "model"
    dense_logits: bool = False
    topk: bool = False
    hidden_states: bool = False
    attentions: bool = False
    generate: bool = False

    @property
    def reads_tokens(self) -> bool:
        """Reads per-token outputs (a distribution, hidden states, attentions), not only generations."""
        return self.dense_logits or self.topk or self.hidden_states or self.attentions

    @property
    def output_distribution(self) -> bool:
        """Reads the teacher's next-token / label distribution (needs a trained head)."""
        return self.dense_logits or self.topk

    def missing_in(self, capabilities: Any) -> list[str]:
        return capabilities.missing_for(logits=self.dense_logits, hidden_states=self.hidden_states,
                                        attentions=self.attentions, topk=self.topk, generate=self.generate)


@dataclass
class PlanParts:
    """The weightless pieces a mode checks itself against (built by `forge.plan`).

    kind: the task's model kind; backend_cls / capabilities: the configured teacher backend's class
    and what it declares it gives (None when the mode has no teacher or the backend is broken);
    teacher_head_trained: whether the teacher's output head carries trained weights.
    """

    cfg: Any
    handler: Any
    loss: Any
    kind: str
    backend_cls: Optional[type] = None
    capabilities: Any = None
    teacher_head_trained: bool = True

    @property
    def backend_name(self) -> str:
        node = self.cfg.get("teacher_backend") or {}
        return str(node.get("name") or node.get("_target_") or "?")

    @property
    def loss_name(self) -> str:
        return str(self.cfg.loss.get("name", "?"))


def generation_only(parts: PlanParts) -> bool:
    """The configured backend only generates text (a generation-only OCR teacher such as tesseract)."""
    caps = parts.capabilities
    return caps is not None and not caps.dense_logits and not caps.topk_logprobs


def token_score_problems(parts: PlanParts, reads: str, alternative: str = "") -> list[ConfigProblem]:
    """One clear refusal for a backend that gives no token probabilities at all, instead of a fix
    that asks for a top-k it cannot give either. `reads`: what the mode reads from the teacher, in
    words; `alternative`: what the mode can do with such a teacher instead, if anything."""
    if not generation_only(parts):
        return []
    fix = "use a backend with logits or top-k log-probabilities: teacher_backend=hf, or openai/vllm with a top-k"
    return [ConfigProblem(
        "teacher_backend", f"{reads}, but teacher_backend={parts.backend_name} gives no token probabilities "
                           f"(it gives: {parts.capabilities.describe()}).", parts.backend_name,
        f"{alternative}; or {fix}" if alternative else fix)]


class Mode(ABC):
    """Base of every mode. Subclasses set the class attributes and override what differs.

    needs_teacher: the mode distils from a teacher (the model group must define one).
    uses_loss: the `loss` group's object is trained with (KD); other modes refuse a non-`ce` loss
      (`loss_note` says what they train on instead).
    uses_rewards: the `reward` group's objects are optimised (RL); other modes refuse rewards.
    accepts_teacher_context: context baking (teacher_strategy.context) is implemented.
    trainer_class: a `transformers.Trainer` (or TRL) subclass with `from_components`.
    args_class: the trainer's arguments class (`TrainingArguments`, or a subclass such as TRL's
      `GRPOConfig`); `trainer_arguments()` adds the mode's own fields to it.
    settings_class: a dataclass of the mode's `mode.trainer.*` settings (None: it takes none).
    """

    needs_teacher: ClassVar[bool] = False
    uses_loss: ClassVar[bool] = False
    uses_rewards: ClassVar[bool] = False
    #: the mode trains at all (mode=eval only scores the student: no trainer, nothing saved)
    trains: ClassVar[bool] = True
    #: a mode that trains nothing but converts the student with its quantizer (mode=ptq): the
    #: converted model is scored as post and saved in final/
    quantizes_without_training: ClassVar[bool] = False
    #: the mode trains on the task's targets (SFT, KD, GKD); a task without them (a benchmark whose
    #: pages carry only tests) is refused. RL trains on rewards instead.
    trains_on_targets: ClassVar[bool] = True
    accepts_teacher_context: ClassVar[bool] = False
    #: the teacher scores its own prompt of each example (`teacher_prompt_*` batch keys), so a task can
    #: show the teacher more than the student (a page at a higher resolution)
    reads_teacher_prompts: ClassVar[bool] = False
    trainer_class: ClassVar[type]
    args_class: ClassVar[type] = TrainingArguments
    settings_class: ClassVar[Optional[type]] = None
    #: where the settings live in the config (`mode.trainer` holds them; a mode may name a block of
    #: its own that `mode.trainer` interpolates, e.g. mode=rl's `rl`)
    settings_key: ClassVar[str] = "mode.trainer"
    #: what the mode trains on instead of the loss group (for the refusal of a loss it would ignore)
    loss_note: ClassVar[str] = "trains without the loss group's object"

    def __init__(self, name: str, trainer: Optional[Mapping[str, Any]] = None,
                 rewards: Optional[Mapping[str, Any]] = None) -> None:
        self.name = str(name)
        self.raw_settings: dict[str, Any] = dict(trainer or {})
        self.reward_specs: dict[str, Any] = dict(rewards or {})

    # ---- config time --------------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        """The mode's settings object (call after `check` found no problem with them)."""
        return None if self.settings_class is None else self.settings_class(**self.raw_settings)

    def settings_problems(self) -> list[ConfigProblem]:
        """Unknown keys, out-of-range values and the settings class's own refusals, as problems."""
        from forge.config.ranges import range_problems

        cls, key = self.settings_class, self.settings_key
        if cls is None:
            return [ConfigProblem(key, f"mode={self.name} takes no settings.", sorted(self.raw_settings),
                                  f"drop the {key} overrides")] if self.raw_settings else []
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(self.raw_settings) - set(known))
        if unknown:
            return [ConfigProblem(key, f"unknown setting(s) of mode={self.name}.", unknown,
                                  f"valid: {', '.join(known)}")]
        problems = range_problems(self.raw_settings, cls, key)
        if not problems:
            try:
                self.settings  # noqa: B018 - the settings class's own cross-field checks
            except (TypeError, ValueError) as exc:
                problems.append(ConfigProblem(key, str(exc)))
        return problems

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        """Every problem of this mode with the rest of the config (override and extend)."""
        problems = self.settings_problems()
        if not self.uses_loss and parts.loss_name != "ce":
            problems.append(ConfigProblem(
                "loss", f"mode={self.name} {self.loss_note}, so this loss would be ignored.", parts.loss_name,
                "drop the loss override (loss=ce), or use mode=kd to distil with it"))
        if self.trains_on_targets and not getattr(parts.handler, "has_training_targets", True):
            problems.append(ConfigProblem(
                "task", f"task={parts.handler.name} has no targets to train on, and mode={self.name} trains on them.",
                parts.handler.name, "score a model on it with mode=eval, or train with mode=rl and a reward "
                                    "that needs no reference (reward=olmocr_checks)"))
        rewards = parts.cfg.get("reward") or {}
        if not self.uses_rewards and rewards:
            problems.append(ConfigProblem(
                "reward", f"mode={self.name} does not optimise rewards, so they would be ignored.",
                sorted(rewards), "drop the reward override, or use mode=rl"))
        return problems

    def alpha_unused(self, parts: PlanParts, meaning: str, fix: str) -> list[ConfigProblem]:
        """A non-zero `alpha` refused for a mode that distils nothing (`meaning` says why)."""
        alpha = float(parts.cfg.alpha)
        return [] if alpha == 0.0 else [ConfigProblem("alpha", f"mode={self.name} {meaning}.", alpha, fix)]

    def teacher_needs(self, parts: PlanParts) -> TeacherNeeds:
        """What this mode reads from its teacher (only asked when `needs_teacher`)."""
        return TeacherNeeds()

    def cache_refusals(self, parts: PlanParts) -> list[str]:
        """Reasons specific to this mode why the teacher-signal cache would give wrong signals."""
        return []

    def stored_view(self, parts: PlanParts) -> Optional["TopKRequest"]:
        """The teacher's top-k view this mode can read from the cache's top-k store in place of its
        teacher backend (None: it reads none; KD's cache stands in for a forward pass instead)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What run_metadata.json records about the mode (the study report reads it)."""
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "needs_teacher": self.needs_teacher, "uses_loss": self.uses_loss}

    # ---- run time -----------------------------------------------------------------------------

    def trainer_arguments(self) -> dict[str, Any]:
        """Fields of `args_class` beyond the `trainer.*` ones (e.g. GRPOConfig's num_generations)."""
        return {}

    def trainer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments `trainer_class.from_components` takes from this mode's settings."""
        return {}

    def build_trainer(self, components: Any, args: Any, runtime: Any) -> Any:
        """The trainer, built from the run's components (student, data, teacher, loss, runtime)."""
        return self.trainer_class.from_components(components, args, runtime=runtime, **self.trainer_kwargs())
