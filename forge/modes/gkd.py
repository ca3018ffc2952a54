"""`mode=gkd`: generalized knowledge distillation on completions (on-policy fraction `lmbda`,
generalized JSD `beta`), the teacher scored through a teacher backend (in-process or a server)."""

from __future__ import annotations

from typing import Any, Optional

from forge.config.errors import ConfigProblem
from forge.modes.base import Mode, PlanParts, TeacherNeeds, generation_only, token_score_problems
from forge.teachers.cache.teacher_text import TeacherText
from forge.teachers.cache.topk_store import TopKRequest

#: GKD with a teacher that only generates: sequence-level KD (Kim & Rush, 2016), every batch's
#: completions the teacher's, the student trained by cross-entropy on them.
SEQUENCE_LEVEL = ("mode.trainer.seq_kd=true mode.trainer.lmbda=0 trains by cross-entropy on the teacher's "
                  "generated text (sequence-level KD)")
from forge.trainers.gkd import GKDSettings, GKDTrainer


class GKDMode(Mode):
    """GKD (Agarwal et al., 2023) with Forge's own trainer; decoder tasks only."""

    needs_teacher = True
    accepts_teacher_context = True
    reads_teacher_prompts = True
    trainer_class = GKDTrainer
    settings_class = GKDSettings
    loss_note = "has its own loss (generalized JSD, mode.trainer.beta)"

    def teacher_needs(self, parts: PlanParts) -> TeacherNeeds:
        top_k = self.raw_settings.get("top_k")
        if self._sequence_level(parts):
            return TeacherNeeds(via="backend", generate=True)
        return TeacherNeeds(via="backend", dense_logits=top_k is None, topk=top_k is not None,
                            generate=bool(self.raw_settings.get("seq_kd")))

    def _sequence_level(self, parts: PlanParts) -> bool:
        """Sequence-level KD from a generation-only teacher: seq_kd on, no on-policy batches."""
        lmbda = float(self.raw_settings.get("lmbda", 0.5) or 0.0)
        return generation_only(parts) and bool(self.raw_settings.get("seq_kd")) and lmbda == 0.0

    def check(self, parts: PlanParts) -> list[ConfigProblem]:
        from forge.models.kinds import model_kind

        problems = super().check(parts)
        if not model_kind(parts.kind).generates:
            problems.append(ConfigProblem(
                "mode", f"mode={self.name} trains on generated completions, so it needs a decoder (causal LM) "
                        f"task; task={parts.cfg.task.name} is {parts.kind}.", self.name,
                "use task=europarl_en_fr, or mode=kd"))
        if float(parts.cfg.alpha) != 0.0:
            problems.append(ConfigProblem(
                "alpha", f"mode={self.name} does not use alpha: its loss is JSD + mode.trainer.sft_weight * CE.",
                parts.cfg.alpha, "drop the alpha override; weigh CE with mode.trainer.sft_weight"))
        ts = parts.cfg.teacher_strategy
        if ts.cotrain:
            problems.append(ConfigProblem("teacher_strategy", f"mode={self.name} distils from a frozen teacher.",
                                          ts.name, "use teacher_strategy=frozen_base, frozen_sft or context_baking"))
        if parts.capabilities is not None:
            problems += self._backend_problems(parts)
        return problems

    def _backend_problems(self, parts: PlanParts) -> list[ConfigProblem]:
        caps, name, settings = parts.capabilities, parts.backend_name, self.raw_settings
        if self._sequence_level(parts):
            return []
        scoreless = token_score_problems(parts, f"mode={self.name} scores every completion token with the "
                                                "teacher's distribution (generalized JSD)", SEQUENCE_LEVEL)
        if scoreless:
            return scoreless
        top_k, problems = settings.get("top_k"), []
        if top_k is None and not caps.dense_logits:
            problems.append(ConfigProblem(
                "mode.trainer.top_k", f"is null (dense teacher logits), which teacher_backend={name} cannot give "
                                      f"(it gives: {caps.describe()}).", None,
                "set mode.trainer.top_k=20 (the server's top-k log-probabilities)"))
        if top_k is not None and caps.max_k is not None and int(top_k) > caps.max_k:
            problems.append(ConfigProblem("mode.trainer.top_k", f"exceeds what teacher_backend={name} returns "
                                                                f"({caps.max_k}).", top_k,
                                          f"use mode.trainer.top_k<={caps.max_k}"))
        problems += self._tail_problems(parts) + self._stored_text_problems(parts)
        if settings.get("seq_kd") and not caps.generate:
            problems.append(ConfigProblem("mode.trainer.seq_kd", f"needs the teacher to generate; "
                                                                 f"teacher_backend={name} cannot.", True,
                                          "set mode.trainer.seq_kd=false or use teacher_backend=hf"))
        return problems

    def _tail_problems(self, parts: PlanParts) -> list[ConfigProblem]:
        """A tail bucket reads the teacher's mass outside the top k, at temperature 1."""
        settings, caps, name = self.raw_settings, parts.capabilities, parts.backend_name
        if not settings.get("tail_bucket"):
            return []
        if settings.get("top_k") is None:
            return [ConfigProblem("mode.trainer.tail_bucket", "needs a top-k view (the bucket holds the teacher's "
                                                              "mass outside the k ids); top_k is null.", True,
                                  "set mode.trainer.top_k=20, or tail_bucket=false")]
        problems = []
        if not caps.tail_mass:
            problems.append(ConfigProblem(
                "mode.trainer.tail_bucket", f"needs the teacher's mass outside its top k, which teacher_backend={name} "
                                            f"cannot give (it gives: {caps.describe()}).", True,
                "set mode.trainer.tail_bucket=false, or use teacher_backend=hf"))
        if float(settings.get("temperature", 0.9)) != 1.0:
            problems.append(ConfigProblem(
                "mode.trainer.tail_bucket", "compares the teacher's mass outside its top k, which is known at "
                                            f"temperature 1 only; mode.trainer.temperature is "
                                            f"{settings.get('temperature', 0.9)}.", True,
                "set mode.trainer.temperature=1.0, or tail_bucket=false"))
        return problems

    def _stored_text_problems(self, parts: PlanParts) -> list[ConfigProblem]:
        """Stored teacher completions live in the teacher cache, with their top-k view."""
        settings = self.raw_settings
        if settings.get("seq_kd_completions") != "stored":
            return []
        key, cache = "mode.trainer.seq_kd_completions", (parts.cfg.get("teacher") or {}).get("cache", "auto")
        if not settings.get("seq_kd"):
            return [ConfigProblem(key, "is stored, but mode.trainer.seq_kd is false (the dataset's completions are "
                                       "used).", "stored", "set mode.trainer.seq_kd=true, or seq_kd_completions=sampled")]
        if settings.get("top_k") is None:
            return [ConfigProblem(key, "is stored: the completions are kept with the teacher's top-k view of them, "
                                       "and mode.trainer.top_k is null.", "stored", "set mode.trainer.top_k=20")]
        if str(getattr(cache, "value", cache)) == "off":
            return [ConfigProblem(key, "is stored, which keeps them in the teacher cache; teacher.cache is off.",
                                  "stored", "set teacher.cache=auto, or seq_kd_completions=sampled")]
        return []

    def cache_refusals(self, parts: PlanParts) -> list[str]:
        """The cache holds the teacher's top-k view of the dataset's completions: it serves the
        off-policy batches of any `lmbda` (on-policy samples are scored live, and the run says so)."""
        settings, reasons = self.raw_settings, []
        if self._sequence_level(parts):
            return [f"teacher_backend={parts.backend_name} only generates: there is no distribution to store"]
        if settings.get("top_k") is None:
            reasons.append(f"mode={self.name} with mode.trainer.top_k=null reads the teacher's dense logits, which the "
                           "cache does not store (a vocabulary-sized row per token); set mode.trainer.top_k=20 to "
                           "read a stored top-20 view")
        if settings.get("seq_kd") and not self._stores_text():
            reasons.append(f"mode={self.name} with mode.trainer.seq_kd=true trains on completions the teacher samples "
                           "at each step; the store holds completions written once (set "
                           "mode.trainer.seq_kd_completions=stored for one teacher completion per example)")
        return reasons

    def stored_view(self, parts: PlanParts) -> Optional[TopKRequest]:
        settings = self.raw_settings
        top_k = settings.get("top_k")
        if top_k is None or self._sequence_level(parts):
            return None
        return TopKRequest(int(top_k), tail=bool(settings.get("tail_bucket")),
                           teacher_text=self._teacher_text(parts) if self._stores_text() else None)

    def _stores_text(self) -> bool:
        return bool(self.raw_settings.get("seq_kd")) and self.raw_settings.get("seq_kd_completions") == "stored"

    def _teacher_text(self, parts: PlanParts) -> TeacherText:
        """How the teacher writes the stored completions: as a live seq_kd step samples them, seeded
        from the teacher's seed (so every arm and student seed of a study shares one set)."""
        settings, cfg = self.raw_settings, parts.cfg
        seed = cfg.teacher_strategy.get("seed")
        return TeacherText(int(settings.get("max_new_tokens", 64)), float(settings.get("temperature", 0.9)),
                           int(cfg.seed if seed is None else seed))

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"settings": self.settings}
