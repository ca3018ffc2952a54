"""Prompt → completion tasks for decoder-only LMs: the loss is taken on the completion only.

An example is a source text and a target text. The source becomes a prompt (`prompt_template`
with `{source}` filled in, wrapped in the tokenizer's chat template when it has one and
`chat_template` allows); the target becomes the completion (target + EOS). They are stored as
separate token lists; `forge.data.causal_collate` lays them out for the loss (labels -100 on the
prompt), for generation (left-padded prompt) and for GKD. Context baking (a `teacher_context` the
teacher sees and the student does not) is part of every such task.

`PromptCompletionHandler` holds all of that plus truncation, `prepare`, generation-based `predict`
and `references`. A task (translation, later summarisation or OCR-as-text) supplies its raw splits
(`load_splits` -> `PromptPairs`, `forge.data.prompt_pairs`), its metrics and its own config checks.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any, Mapping, Optional

import torch

from forge.config.errors import ConfigError, ConfigProblem
from forge.data.base import PreparedData, TaskDataHandler
from forge.data.causal_collate import (
    COMPLETION,
    PROMPT,
    TARGET_TEXT,
    TEACHER_PROMPT,
    CausalLMCollator,
    CausalLMEvalCollator,
    pad_token_id_for,
)
from forge.data.prompt_pairs import EncodedSplit, PromptPairs, first_line

logger = logging.getLogger(__name__)

CHAT_MODES = ("auto", "always", "never")
SOURCE_PLACEHOLDER = "{source}"
EVAL_SET = "validation"
#: raw source text column (the target's is causal_collate.TARGET_TEXT).
SOURCE_TEXT = "source"


class PromptCompletionHandler(TaskDataHandler):
    """Prompt → completion data for causal LMs; a subclass supplies splits and metrics.

    `prepare` must run before `predict` (it keeps the tokenizer, which decoding needs).
    """

    model_kind = "causal_lm"
    supports_teacher_context = True
    #: where the example's input goes in `prompt_template`, and what the input is called.
    placeholder: str = SOURCE_PLACEHOLDER
    placeholder_holds: str = "the source text"
    default_prompt_example: str = "Translate to French.\\nEnglish: {source}\\nFrench:"
    eval_set_names: tuple[str, ...] = (EVAL_SET,)

    def __init__(
        self,
        name: str,
        prompt_template: str = SOURCE_PLACEHOLDER,
        chat_template: str = "auto",
        system_prompt: Optional[str] = None,
        max_new_tokens: int = 96,
        num_beams: int = 1,
        max_length: int = 256,
        **common: Any,
    ) -> None:
        super().__init__(name=name, max_length=max_length, **common)
        self.prompt_template = prompt_template
        self.chat_template = str(getattr(chat_template, "value", chat_template))
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self._tokenizer: Any = None
        self._use_chat: bool = False

    @property
    def num_labels(self) -> int:
        """0: a causal LM has no classification head (load_model ignores it for causal_lm)."""
        return 0

    @abstractmethod
    def load_splits(self) -> dict[str, PromptPairs]:
        """All raw splits, uncapped: "train" and "validation"."""

    # ---- config-time checks -------------------------------------------------------------------

    def validate(self) -> list[ConfigProblem]:
        problems = super().validate()  # max_new_tokens / num_beams ranges: the schema declares them
        if self.chat_template not in CHAT_MODES:
            problems.append(ConfigProblem(
                key="task.chat_template", value=self.chat_template,
                message=f"must be one of {', '.join(CHAT_MODES)}",
                fix="set task.chat_template=auto (use the tokenizer's chat template when it has one)",
            ))
        if not isinstance(self.prompt_template, str) or self.placeholder not in self.prompt_template:
            problems.append(ConfigProblem(
                key="task.prompt_template", value=self.prompt_template,
                message=f"must contain {self.placeholder}, where {self.placeholder_holds} goes",
                fix=f'e.g. task.prompt_template="{type(self).default_prompt_example}"',
            ))
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            problems.append(ConfigProblem(key="task.system_prompt", value=self.system_prompt,
                                          message="must be a string or null",
                                          fix="set task.system_prompt=null"))
        return problems

    # ---- prompts ------------------------------------------------------------------------------

    def uses_chat_template(self, tokenizer: Any) -> bool:
        """auto: whether the tokenizer has a chat template; always: it must; never: plain text."""
        has = getattr(tokenizer, "chat_template", None) is not None
        if self.chat_template == "always" and not has:
            raise ConfigError(ConfigProblem(
                key="task.chat_template", value="always",
                message="the tokenizer has no chat template",
                fix="set task.chat_template=auto (plain prompts for such tokenizers) or never",
            ))
        if self.chat_template not in CHAT_MODES:
            raise ConfigError(ConfigProblem(key="task.chat_template", value=self.chat_template,
                                            message=f"must be one of {', '.join(CHAT_MODES)}",
                                            fix="set task.chat_template=auto"))
        return has and self.chat_template != "never"

    def render_prompt(self, source: str, tokenizer: Any, context: Optional[str] = None) -> str:
        """The prompt text for one source text (what the model sees before the target).

        Chat: [system (context, else system_prompt, else none: the template's own default)] +
        user (the filled prompt_template), then the generation prompt. Plain: the filled template,
        after `context + "\\n\\n"` when a context is given.
        """
        text = self.prompt_template.replace(self.placeholder, source)
        if not self._use_chat_for(tokenizer):
            return text if context is None else f"{context}\n\n{text}"
        return tokenizer.apply_chat_template(self.chat_messages(text, context), add_generation_prompt=True,
                                             tokenize=False)

    def chat_messages(self, user_content: Any, context: Optional[str] = None) -> list[dict[str, Any]]:
        """The prompt as chat messages: [system (context, else system_prompt, else none)] + user."""
        system = context if context is not None else self.system_prompt
        messages: list[dict[str, Any]] = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": user_content})
        return messages

    def _use_chat_for(self, tokenizer: Any) -> bool:
        if tokenizer is self._tokenizer:
            return self._use_chat
        return self.uses_chat_template(tokenizer)

    def _encode_prompts(self, texts: list[str], tokenizer: Any) -> list[list[int]]:
        """Chat prompts already hold their special tokens (the template writes them); plain prompts
        get the tokenizer's usual ones (e.g. a BOS)."""
        if not texts:
            return []
        use_chat = self._use_chat_for(tokenizer)
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=not use_chat)["input_ids"]]

    @staticmethod
    def completion_text(prompt: str, target: str) -> str:
        """The target as it continues the prompt: after a space when the prompt ends in a
        non-space character (plain "...French:" → " Reprise..."), as running text would have it;
        directly after a chat template's "assistant\\n"."""
        return target if not prompt or prompt[-1].isspace() else " " + target

    # ---- tokenisation and truncation ----------------------------------------------------------

    def _encode_split(self, pairs: PromptPairs, tokenizer: Any, eos: int) -> EncodedSplit:
        prompts = [self.render_prompt(s, tokenizer) for s in pairs.sources]
        prompt_ids = self._encode_prompts(prompts, tokenizer)
        completions = [self.completion_text(p, t) for p, t in zip(prompts, pairs.targets)]
        completion_ids = [
            list(ids) + [eos] for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]
        ] if completions else []
        encoded = EncodedSplit(prompts, prompt_ids, completion_ids, list(pairs.sources))
        overhead: Optional[int] = None
        for i in range(len(pairs)):
            if len(prompt_ids[i]) + len(completion_ids[i]) <= self.max_length:
                continue
            if overhead is None:
                overhead = self._prompt_overhead(tokenizer)
            encoded.overflowed += 1
            self._truncate(encoded, i, tokenizer, overhead)
        return encoded

    def _prompt_overhead(self, tokenizer: Any) -> int:
        """Tokens of the prompt with an empty source; max_length must leave room beyond it."""
        overhead = len(self._encode_prompts([self.render_prompt("", tokenizer)], tokenizer)[0])
        if overhead + 2 > self.max_length:
            raise ConfigError(ConfigProblem(
                key="task.max_length", value=self.max_length,
                message=(f"the prompt alone (template, chat markup, system prompt) takes {overhead} "
                         "tokens, leaving no room for the source and the target"),
                fix=(f"raise task.max_length to at least {overhead + 64}, or shorten "
                     "task.prompt_template / task.system_prompt"),
            ))
        return overhead

    def _truncate(self, enc: EncodedSplit, i: int, tokenizer: Any, overhead: int) -> None:
        """Make example i fit max_length: cut the END of the source first, keeping the full target
        (the usual case: a long source). Only when the target alone leaves no room for any source
        token are both cut, each keeping a share proportional to its length (a pair cut in
        proportion stays roughly aligned); a cut target loses its EOS, so the model is not taught
        to stop early."""
        source = enc.fitted_sources[i]
        source_ids = list(tokenizer(source, add_special_tokens=False)["input_ids"])
        completion = enc.completion_ids[i]
        budget = self.max_length - len(completion)
        fitted = None
        if budget >= overhead + 1:
            fitted = self._fit_source(source_ids, budget, overhead, tokenizer)
        if fitted is None:
            room = self.max_length - overhead
            share = max(1, room * len(source_ids) // max(1, len(source_ids) + len(completion)))
            fitted = self._fit_source(source_ids, overhead + min(share, room - 1), overhead, tokenizer)
            if fitted is None:  # not even one source token fits: an empty source
                empty = self.render_prompt("", tokenizer)
                fitted = ("", empty, self._encode_prompts([empty], tokenizer)[0])
            enc.completion_ids[i] = completion[: self.max_length - len(fitted[2])]
            enc.truncated_target += 1
        if fitted[0] != source:
            enc.truncated_source += 1
        enc.fitted_sources[i], enc.prompts[i], enc.prompt_ids[i] = fitted

    def _fit_source(self, source_ids: list[int], budget: int, overhead: int,
                    tokenizer: Any) -> Optional[tuple[str, str, list[int]]]:
        """(source text, prompt text, prompt ids) for the longest source prefix whose prompt fits
        in `budget` tokens, or None. Decoding a token prefix and re-tokenising it inside the
        template can shift a token or two at the boundaries, so it re-checks and shrinks."""
        keep = min(len(source_ids), budget - overhead)
        for _ in range(16):
            if keep <= 0:
                return None
            text = tokenizer.decode(source_ids[:keep], clean_up_tokenization_spaces=False).strip()
            prompt = self.render_prompt(text, tokenizer)
            ids = self._encode_prompts([prompt], tokenizer)[0]
            if len(ids) <= budget:
                return text, prompt, ids
            keep -= len(ids) - budget
        return None

    # ---- prepare ------------------------------------------------------------------------------

    def prepare(self, processor: Any, teacher_context: Optional[str] = None) -> PreparedData:
        """Load, cap, render, tokenise and truncate both splits; `processor` is the tokenizer.

        Each example keeps its raw `source` / `target` text, `prompt_input_ids`,
        `completion_input_ids` (target + EOS) and, with `teacher_context`, the teacher's prompt
        `teacher_prompt_input_ids` (context baking: the context is the chat system message, in
        place of system_prompt, or `context + "\\n\\n"` before a plain prompt; it uses the same,
        possibly truncated, source and does not count against max_length). The student's inputs
        never contain the context.

        max_length bounds prompt + completion; how many examples had their source (and, rarely,
        their target) cut is logged and returned in `info["truncated"]`. References for scoring
        are always the full target strings.
        """
        from datasets import Dataset

        self.check_teacher_context(teacher_context)
        eos = self._start(processor)
        tokenizer = self._tokenizer
        datasets_: dict[str, Any] = {}
        truncated: dict[str, dict[str, int]] = {}
        examples: dict[str, Optional[str]] = {}
        for split, pairs in self.capped_splits().items():
            columns, enc = self._split_columns(pairs, tokenizer, eos, teacher_context)
            datasets_[split] = Dataset.from_dict(columns)
            truncated[split] = {"examples": enc.overflowed, "source": enc.truncated_source,
                                "target": enc.truncated_target}
            self._log_truncation(split, enc, len(pairs))
            if split == "train":
                examples["prompt_example"] = enc.prompts[0]
                if teacher_context is not None:
                    examples["teacher_prompt_example"] = enc.teacher_prompts[0]

        eval_sets = {name: datasets_[name] for name in self.eval_set_names}
        info = self.describe(datasets_["train"], eval_sets)
        info.update(text_columns=[SOURCE_TEXT, TARGET_TEXT], chat_template=self._use_chat,
                    teacher_context=teacher_context, max_length=self.max_length, truncated=truncated,
                    **examples)
        collator, eval_collator = self._collators(processor)
        return PreparedData(train=datasets_["train"], eval_sets=eval_sets, info=info,
                            collator=collator, eval_collator=eval_collator)

    def _collators(self, processor: Any) -> tuple[Any, Any]:
        """(training collator, eval collator); `processor` is the tokenizer here."""
        pad = pad_token_id_for(processor)
        return CausalLMCollator(pad), CausalLMEvalCollator(pad)

    def _start(self, tokenizer: Any) -> int:
        """Check the tokenizer (the processor of text tasks), decide chat or plain prompts once,
        keep it for predict; the EOS id."""
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; a completion must end with one")
        self._tokenizer = None
        self._use_chat = self.uses_chat_template(tokenizer)
        self._tokenizer = tokenizer
        if not self._use_chat and self.system_prompt is not None:
            logger.warning(
                "task.system_prompt is ignored: prompts are plain text (no chat template in use)"
            )
        return int(eos)

    def _split_columns(self, pairs: PromptPairs, tokenizer: Any, eos: int,
                       teacher_context: Optional[str]) -> tuple[dict[str, list], EncodedSplit]:
        """The dataset columns of one split (what the causal collators read) and its encoding."""
        enc = self._encode_split(pairs, tokenizer, eos)
        columns: dict[str, list] = {
            SOURCE_TEXT: list(pairs.sources),
            TARGET_TEXT: list(pairs.targets),
            PROMPT: enc.prompt_ids,
            COMPLETION: enc.completion_ids,
        }
        if teacher_context is not None:
            enc.teacher_prompts = [
                self.render_prompt(s, tokenizer, teacher_context) for s in enc.fitted_sources
            ]
            columns[TEACHER_PROMPT] = self._encode_prompts(enc.teacher_prompts, tokenizer)
        return columns, enc

    def _log_truncation(self, split: str, enc: EncodedSplit, n: int) -> None:
        if enc.overflowed:
            logger.warning(
                "%s %s: %d of %d example(s) exceeded task.max_length=%d; cut the source of %d and "
                "the target of %d", self.name, split, enc.overflowed, n, self.max_length,
                enc.truncated_source, enc.truncated_target,
            )

    # ---- prediction ---------------------------------------------------------------------------

    def predict(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> list[str]:
        """Generated completions for a batch: greedy (num_beams 1) or beam search from the
        left-padded prompts, new tokens only, special tokens dropped, whitespace stripped, first
        line only (small models often run on with another prompt-like line). Works for plain and
        peft-wrapped models (both have `generate`)."""
        if self._tokenizer is None:
            raise RuntimeError("call prepare(tokenizer) before predict: decoding needs the tokenizer")
        tokenizer = self._tokenizer
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = None
        ids = batch["prompt_input_ids"]
        mask = batch["prompt_attention_mask"]
        pixels = {key: batch[key] for key in ("pixel_values", "image_grid_thw") if key in batch}
        if "prompt_mm_token_type_ids" in batch:  # images: which prompt positions are image tokens
            pixels["mm_token_type_ids"] = batch["prompt_mm_token_type_ids"]
        if device is not None:
            ids, mask = ids.to(device), mask.to(device)
            pixels = {key: value.to(device) for key, value in pixels.items()}
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                **pixels,
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
                pad_token_id=pad_token_id_for(tokenizer),
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = output[:, ids.shape[1]:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [self.postprocess(text) for text in texts]

    def postprocess(self, generated: str) -> str:
        """The answer in a generation: its first line (a sentence task's small model often runs
        on with another prompt-like line); multi-line tasks keep it all."""
        return first_line(generated)

    def references(self, batch: Mapping[str, Any]) -> list[str]:
        return list(batch["references"])
