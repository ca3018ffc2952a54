"""`mode=gkd`: generalized knowledge distillation (Agarwal et al., 2023; TRL's GKDTrainer).

Per batch, the completions the student learns on come from one of three places:
  * with probability `lmbda`, the student samples them itself (on-policy) from the prompts;
  * otherwise, with `seq_kd`, the teacher generates them (sequence-level KD);
  * otherwise, the dataset's targets (supervised KD).
The teacher then scores every completion token, through whichever backend is configured (in-
process dense logits, or the top-k view of a vLLM / OpenAI-compatible server), and the loss is
the generalized Jensen-Shannon divergence (`beta`: 0 = forward KL, 1 = reverse KL) on completion
tokens only, plus `sft_weight` · CE on the dataset targets when they are used.

Why Forge's own trainer rather than TRL's: the teacher is a backend object (TRL's wants an
in-process model), context baking gives the teacher a different prompt than the student, and the
run must resume exactly: the on-policy coin for each step is drawn from (seed, step), the same on
every rank, and each rank samples from its own stream seeded by (seed, rank, step), not from a
stream an interrupted run would have advanced differently. The loss is `forge.losses.divergence`,
tested to equal TRL's `generalized_jsd_loss` on the same inputs.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from forge.config.errors import ConfigProblem
from forge.config.ranges import at_least, in_range, non_negative, positive, range_problems
from forge.data.causal_collate import teacher_prompt
from forge.data.indexing import EXAMPLE_INDEX_KEY
from forge.decoding.generation import completion_mask, eos_ids, generate_completions, positions_from_mask
from forge.decoding.scoring import TeacherBackendError, TeacherScorer
from forge.decoding.token_logprobs import completion_logits, completion_topk
from forge.decoding.vision import VisionInputs, vision_inputs
from forge.losses.divergence import TopKView, generalized_jsd, topk_generalized_jsd
from forge.runtime.seeds import derived_seed, seeded
from forge.trainers.base import ForgeTrainerMixin, TrainingRuntime, trainer_kwargs
from forge.trainers.components import TrainingComponents

log = logging.getLogger(__name__)

#: where a batch's completions came from (logged: `loss/on_policy` = fraction of student samples)
SOURCE_DATASET, SOURCE_TEACHER, SOURCE_STUDENT = 0, 1, 2
SEQ_KD_COMPLETIONS = ("sampled", "stored")


@dataclass(frozen=True)
class GKDSettings:
    """mode=gkd's knobs (`mode.trainer.*`).

    lmbda: fraction of batches whose completions the student samples (0 = off-policy only).
    beta: generalized JSD interpolation (0 forward KL, 1 reverse KL).
    seq_kd: off-policy batches use teacher-generated completions instead of the dataset's.
    temperature: softens both distributions in the loss and is the sampling temperature.
    max_new_tokens: length cap of sampled / teacher-generated completions.
    top_k: null = dense teacher logits (only the hf backend has them); N = the teacher's top-N
      view (every backend), the loss then compares both sides over those N ids.
    sft_weight: weight of the student's CE on dataset targets (0 = TRL's pure GKD loss).
    tail_bucket: with top_k, compare k + 1 buckets (the k ids at their full-vocabulary mass and one
      for the rest) instead of both sides renormalised over the k ids; needs the teacher's tail
      mass (teacher_backend=hf) and temperature 1 (the mass outside the k is known only there).
    seq_kd_completions: "sampled" = the teacher samples new completions for every off-policy batch;
      "stored" = it writes one per training example once, kept in the teacher cache with its top-k
      view (`forge.teachers.cache.teacher_text`), and every run with the same key trains on them.
    """

    lmbda: float = in_range(0, 1, default=0.5)
    beta: float = in_range(0, 1, default=0.5)
    seq_kd: bool = False
    temperature: float = positive(default=0.9)
    max_new_tokens: int = at_least(1, default=64)
    top_k: Optional[int] = at_least(1, default=None)
    sft_weight: float = non_negative(default=0.0)
    tail_bucket: bool = False
    seq_kd_completions: str = "sampled"

    def __post_init__(self) -> None:
        """The ranges declared above, checked the same way the config check reports them."""
        problems = range_problems(dataclasses.asdict(self), GKDSettings, "mode.trainer")
        if self.seq_kd_completions not in SEQ_KD_COMPLETIONS:
            problems.append(ConfigProblem("mode.trainer.seq_kd_completions", "is not a choice.", self.seq_kd_completions,
                                          f"valid: {', '.join(SEQ_KD_COMPLETIONS)}"))
        if problems:
            raise ValueError("; ".join(p.render() for p in problems))


def on_policy_for(seed: int, step: int, micro: int, lmbda: float) -> bool:
    """The step's coin: a pure function of (seed, step, micro-batch), so a resumed run agrees."""
    if lmbda <= 0.0:
        return False
    if lmbda >= 1.0:
        return True
    return random.Random(f"gkd:{seed}:{step}:{micro}").random() < lmbda


def student_completion_logits(model: Any, prompt: torch.Tensor, prompt_mask: torch.Tensor,
                              completion: torch.Tensor, completion_mask_: torch.Tensor,
                              vision: Optional[VisionInputs] = None) -> torch.Tensor:
    """[B, C, V] student logits predicting each completion token (prompt block + completion block;
    a page prompt's pixels with it, and multimodal RoPE numbering the positions).

    The LM head runs on the last C + 1 positions only (`logits_to_keep`): the prompt's positions
    predict nothing the loss counts, and for a small student the vocabulary projection of every
    prompt token would cost as much as its blocks."""
    ids = torch.cat([prompt, completion], dim=1)
    mask = torch.cat([prompt_mask, completion_mask_], dim=1)
    width = completion.shape[1]
    if vision is not None:
        out = model(input_ids=ids, attention_mask=mask, use_cache=False, **vision.model_kwargs(width))
        start = prompt.shape[1] - 1
        return out.logits[:, start:start + width]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=False,
                logits_to_keep=width + 1)
    return out.logits[:, :width]


def teacher_vision(inputs: dict[str, Any]) -> Optional[VisionInputs]:
    """The page side of the teacher's prompt (its own under context baking), None for text."""
    return vision_inputs(inputs, "teacher_prompt" if "teacher_prompt_input_ids" in inputs else "prompt")


class GKDTrainer(ForgeTrainerMixin, Trainer):
    """Trains the student (optionally LoRA-wrapped) against a `TeacherBackend`."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, runtime: Optional[TrainingRuntime] = None,
                 teacher_backend: TeacherScorer, settings: GKDSettings, pad_token_id: int,
                 eos_token_id: Optional[list[int]] = None, page_prompts: bool = False,
                 teacher_store: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_forge(runtime)
        self.teacher_backend = teacher_backend
        #: the cache's stored top-k view (`StoredTopK`): read for off-policy batches of dataset completions
        self.teacher_store = teacher_store
        #: where that view comes from: the dataset's completions, or the teacher's own written into the store
        self._text_stored = teacher_store is not None and teacher_store.spec.teacher_text is not None
        self._stored_source = SOURCE_TEACHER if self._text_stored else SOURCE_DATASET
        self._said_live = False
        self.settings = settings
        self.pad_token_id = int(pad_token_id)
        self.eos = list(eos_token_id or eos_ids(self.model))
        # what the backend gives for these prompts (a chat server only generates from pages)
        caps = teacher_backend.capabilities.for_prompts(images=page_prompts)
        # a teacher that only generates (an OCR engine, a VLM chat server): sequence-level KD, CE on its completions
        self.sequence_level = not caps.dense_logits and not caps.topk_logprobs
        if self.sequence_level and not (settings.seq_kd and settings.lmbda == 0.0):
            raise ValueError(f"teacher backend '{teacher_backend.name}' only generates: set mode.trainer.seq_kd=true "
                             "and mode.trainer.lmbda=0 (sequence-level KD)")
        if settings.top_k is None and not caps.dense_logits and not self.sequence_level:
            raise ValueError(f"teacher backend '{teacher_backend.name}' gives no dense logits: set mode.trainer.top_k")
        self._micro = (-1, 0)
        self._unscored = 0  # completion tokens of the last batch the teacher could not score

    @classmethod
    def from_components(cls, components: TrainingComponents, args: TrainingArguments,
                        runtime: Optional[TrainingRuntime] = None,
                        settings: Optional[GKDSettings] = None) -> "GKDTrainer":
        if components.teacher_backend is None:
            raise ValueError("GKDTrainer needs a teacher backend")
        tokenizer = components.text_tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(
            model=components.student,
            args=args,
            train_dataset=components.train_dataset,
            data_collator=components.collator,
            processing_class=tokenizer,
            runtime=runtime,
            teacher_backend=components.teacher_backend,
            settings=settings or GKDSettings(),
            pad_token_id=pad,
            eos_token_id=eos_ids(components.student, tokenizer.eos_token_id),
            page_prompts=components.page_prompts,
            teacher_store=components.teacher_signals,
            **trainer_kwargs(runtime),
        )

    # ---- one step ------------------------------------------------------------------------------

    def _next_micro(self) -> int:
        step = self.state.global_step
        last_step, count = self._micro
        self._micro = (step, count + 1 if step == last_step else 0)
        return self._micro[1]

    def _sampling_seed(self, who: str, micro: int) -> int:
        """Each rank samples from its own stream, a pure function of (seed, rank, step, micro-batch):
        ranks draw different samples, and a resumed run draws what the uninterrupted one did."""
        return derived_seed(self.args.seed, f"gkd:{who}:{self.args.process_index}:{self.state.global_step}:{micro}")

    def _completions(self, model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
        s = self.settings
        prompt, prompt_mask = inputs["prompt_input_ids"], inputs["prompt_attention_mask"]
        micro = self._next_micro()
        if on_policy_for(self.args.seed, self.state.global_step, micro, s.lmbda):  # the same on every rank
            with seeded(self._sampling_seed("student", micro)):  # generate() lives on the unwrapped model (DDP)
                ids = generate_completions(self.accelerator.unwrap_model(model), prompt, prompt_mask, max_new_tokens=s.max_new_tokens,
                                           temperature=s.temperature, do_sample=True, eos_token_id=self.eos,
                                           pad_token_id=self.pad_token_id, vision=vision_inputs(inputs))
            return ids, completion_mask(ids, self.eos), SOURCE_STUDENT
        if s.seq_kd and not self._text_stored:  # stored: the training set already holds the teacher's text
            t_prompt, t_mask = teacher_prompt(inputs)
            with seeded(self._sampling_seed("teacher", micro)):
                ids = self.teacher_backend.generate(t_prompt, t_mask, max_new_tokens=s.max_new_tokens,
                                                    temperature=s.temperature, do_sample=True, eos_token_id=self.eos,
                                                    vision=teacher_vision(inputs))
            ids = ids.to(prompt.device)
            return ids, completion_mask(ids, self.eos), SOURCE_TEACHER
        return (inputs["completion_input_ids"], inputs["completion_attention_mask"],
                SOURCE_TEACHER if s.seq_kd else SOURCE_DATASET)

    def _teacher_divergence(self, student_logits: torch.Tensor, inputs: dict[str, torch.Tensor],
                            completion: torch.Tensor, mask: torch.Tensor, source: int) -> torch.Tensor:
        s = self.settings
        counted = mask.bool()
        if s.top_k is None:
            teacher_logits = completion_logits(self.teacher_backend, *teacher_prompt(inputs), completion, mask,
                                               teacher_vision(inputs))
            return generalized_jsd(student_logits, teacher_logits.to(student_logits.device), beta=s.beta,
                                   temperature=s.temperature, mask=counted)
        view = self._teacher_topk(inputs, completion, mask, source).to(student_logits.device)
        # A position a server could not describe comes back as padding: leave it out, and count it.
        scored = counted & torch.isfinite(view.logprobs).any(-1)
        self._unscored = int((counted & ~scored).sum())
        if counted.any() and not scored.any():
            raise TeacherBackendError(f"teacher backend '{self.teacher_backend.name}' described none of "
                                      f"the {int(counted.sum())} completion tokens of this batch")
        return topk_generalized_jsd(student_logits, view, beta=s.beta, temperature=s.temperature, mask=scored,
                                    tail_bucket=s.tail_bucket)

    def _teacher_topk(self, inputs: dict[str, torch.Tensor], completion: torch.Tensor, mask: torch.Tensor,
                      source: int) -> TopKView:
        """The teacher's top-k view of the completion tokens: from the store for the dataset's
        completions, live for anything sampled during training (the store never saw it)."""
        if self.teacher_store is not None and source == self._stored_source:
            return self.teacher_store.view(inputs[EXAMPLE_INDEX_KEY], mask)
        if self.teacher_store is not None and not self._said_live:
            log.info("Step %d: completions sampled during training are scored by the live teacher; the top-k store "
                     "holds the teacher's view of the dataset's completions only", self.state.global_step)
            self._said_live = True
        return completion_topk(self.teacher_backend, *teacher_prompt(inputs), completion, mask, self.settings.top_k,
                               self.settings.temperature, teacher_vision(inputs))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        self._unscored = 0
        completion, mask, source = self._completions(model, inputs)
        logits = student_completion_logits(model, inputs["prompt_input_ids"], inputs["prompt_attention_mask"],
                                           completion, mask, vision_inputs(inputs))
        counted = mask.bool()
        if self.sequence_level:  # the teacher's text is the target; there is no distribution to match
            jsd = F.cross_entropy(logits[counted].float(), completion[counted])
        else:
            jsd = self._teacher_divergence(logits, inputs, completion, mask, source)
        loss = jsd
        components: dict[str, Any] = {("ce_teacher_text" if self.sequence_level else "jsd"): jsd.detach(),
                                      "on_policy": float(source == SOURCE_STUDENT),
                                      "teacher_unscored": float(self._unscored),
                                      "teacher_stored": float(self.teacher_store is not None
                                                              and source == self._stored_source),
                                      "completion_tokens": float(mask.sum(-1).float().mean())}
        if self.settings.sft_weight > 0 and source == SOURCE_DATASET:
            ce = F.cross_entropy(logits[counted].float(), completion[counted])
            loss = loss + self.settings.sft_weight * ce
            components["ce"] = ce.detach()
        self.guard_loss(loss, components)
        self.record_components(components)
        return (loss, {"logits": logits}) if return_outputs else loss
