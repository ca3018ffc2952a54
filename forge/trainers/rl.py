"""`mode=rl`: GRPO through TRL's `GRPOTrainer`, with Forge's runtime around it.

What Forge adds to TRL's trainer, and why:
  * atomic sealed checkpoints, signals, the NaN guard, the tracker and the task's own eval loop
    (the `ForgeTrainerMixin`, as for every Forge trainer);
  * generation seeded per (seed, rank, step): TRL samples from the global RNG, so a resumed run
    would otherwise sample different completions from the step it resumes at;
  * the prompt is the task's own token ids (`forge.data.prompt_rows`), not re-tokenised text;
  * completion log-probabilities computed over the completion positions only
    (`forge.trainers.rl_logps`), which on a CPU is most of the step's LM-head work;
  * `rl.kl_to=teacher`: the KL term pulls toward the teacher, read through its backend;
  * the reference model (`beta > 0`, `kl_to=reference`) is the student as the run starts, saved
    once into the run directory, where TRL loads it from (`config._name_or_path`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from trl import GRPOConfig, GRPOTrainer

from forge.data.prompt_rows import prompt_rows
from forge.rewards.base import Reward, RewardContext
from forge.runtime.layout import RunLayout
from forge.runtime.seeds import derived_seed, seeded
from forge.trainers.base import ForgeTrainerMixin, TrainingRuntime, trainer_kwargs
from forge.trainers.components import TrainingComponents
from forge.trainers.rl_logps import TeacherReference, completion_logps
from forge.trainers.rl_pages import PageBatch
from forge.trainers.rl_settings import RLSettings

log = logging.getLogger("forge.train")


def _is_token_ids(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt)


class RLTrainer(ForgeTrainerMixin, GRPOTrainer):
    """GRPO on the student, its rewards Forge reward objects (TRL's reward-function shape)."""

    def __init__(self, *args: Any, runtime: Optional[TrainingRuntime] = None, settings: RLSettings,
                 teacher_backend: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_forge(runtime)
        self.rl_settings = settings
        self._pages: Optional[PageBatch] = None  # the generation batch's pages, while it is scored
        if settings.kl_to == "teacher" and settings.beta > 0:
            if teacher_backend is None:
                raise ValueError("rl.kl_to=teacher needs a teacher backend")
            self.beta = float(settings.beta)  # GRPOConfig had beta 0, so TRL loaded no reference model
            self.ref_model = TeacherReference(teacher_backend, top_k=settings.teacher_top_k,
                                              temperature=self.temperature)

    @classmethod
    def from_components(cls, components: TrainingComponents, args: GRPOConfig,
                        runtime: Optional[TrainingRuntime] = None, settings: Optional[RLSettings] = None,
                        rewards: Sequence[Reward] = ()) -> "RLTrainer":
        settings = settings or RLSettings()
        processor, tokenizer, student = components.tokenizer, components.text_tokenizer, components.student
        if args.beta > 0 and not hasattr(student, "peft_config"):
            _point_at_reference(student, processor, RunLayout(Path(args.output_dir)).rl_reference, args)
        trainer = cls(model=student, reward_funcs=list(rewards), args=args,
                      train_dataset=prompt_rows(components.train_dataset), processing_class=processor,
                      runtime=runtime, settings=settings, teacher_backend=components.teacher_backend,
                      **trainer_kwargs(runtime))
        context = RewardContext(tokenizer=tokenizer, eos_token_ids=list(trainer.eos_token_ids),
                                pad_token_id=int(tokenizer.pad_token_id), teacher=components.teacher_backend,
                                teacher_top_k=settings.teacher_top_k)
        for reward in rewards:
            reward.bind(context)
        return trainer

    # ---- prompts, sampling, scoring ------------------------------------------------------------

    def _tokenize_prompts(self, prompts: list) -> Any:
        """Prompts that are already the task's token ids pass through; others go to TRL (text, chat
        messages, images)."""
        if prompts and all(_is_token_ids(p) for p in prompts):
            ids = [list(p) for p in prompts]
            return ids, None, ({} if self._pages is None else self._pages.generation_fields(ids))
        return super()._tokenize_prompts(prompts)

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        """Sample from a stream of (seed, rank, step, micro-step): a resumed run samples what the
        uninterrupted one did, and ranks sample differently."""
        micro = self._step % max(int(self.args.gradient_accumulation_steps), 1)  # TRL's _step restarts on resume
        stream = f"rl:{self.args.process_index}:{self.state.global_step}:{micro}"
        with seeded(derived_seed(self.args.seed, stream)):
            return super()._generate_single_turn(*args, **kwargs)

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                           logits_to_keep: int, batch_size: Optional[int] = None,
                                           compute_entropy: bool = False, compute_aux_loss: bool = False,
                                           **model_inputs: Any) -> Any:
        if self._pages is not None and model_inputs.get("pixel_values") is None:  # scoring a page batch
            model_inputs = {**model_inputs, **self._pages.forward_kwargs(input_ids)}
        if isinstance(model, TeacherReference):
            vision = None if self._pages is None else self._pages.vision(input_ids[:, :-logits_to_keep])
            return model.logps(input_ids, attention_mask, logits_to_keep, vision=vision), None, None
        if compute_aux_loss or any(v is not None for v in model_inputs.values()):  # images, MoE: TRL's path
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **model_inputs)
        logps, entropies = completion_logps(model, input_ids, attention_mask, logits_to_keep,
                                            temperature=self.temperature, batch_size=batch_size,
                                            compute_entropy=compute_entropy, autocast=self.accelerator.autocast)
        return logps, entropies, None

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        self._pages = PageBatch.from_rows(inputs, self.processing_class, self.accelerator.device)
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            pages, self._pages = self._pages, None
        if pages is not None:  # the loss step's forward passes take the pages too (TRL splits them)
            out.update(pages.forward_kwargs(torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)))
        if isinstance(self.ref_model, TeacherReference):
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["kl/teacher_outside_topk"].append(self.ref_model.last_outside_view)
            self._metrics[mode]["kl/teacher_unscored"].append(float(self.ref_model.last_unscored))
        return out

    # ---- the step ------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        loss = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        value = loss[0] if isinstance(loss, tuple) else loss
        advantages = inputs.get("advantages") if isinstance(inputs, dict) else None
        self.guard_loss(value, {"grpo": value, **({"advantage": advantages} if advantages is not None else {})})
        return loss

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Forge's run directory is its own record; TRL would write a README.md into it."""


def _point_at_reference(student: Any, tokenizer: Any, where: Path, args: GRPOConfig) -> None:
    """Save the student as the run starts (once: a resumed run finds it) where TRL loads its
    reference model from, and point the student's config there. The main process writes it
    (atomically), the others wait for it."""
    with args.main_process_first(desc="saving the GRPO reference model"):
        if args.should_save and not (where / "config.json").is_file():
            staging = where.with_name(where.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            student.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            staging.rename(where)
            log.info("Saved the GRPO reference model (the student as the run starts) in %s", where)
    student.config._name_or_path = str(where)
