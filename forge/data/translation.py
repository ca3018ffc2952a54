"""Translation with a decoder-only LM: prompt → target, loss on the target tokens only.

Data comes from one of two places, with the same result:
  * the hub (default, `task.data_dir=null`): `datasets.load_dataset(hub_dataset, hub_config)`,
    rows with a `translation` dict column ({en, fr}) or plain `<source_lang>` / `<target_lang>`
    columns. Europarl on the hub has ONLY a train split, so when no validation/dev/test split
    exists the eval set is carved deterministically from the END of train: the last 2,000 rows
    (`HUB_HELDOUT_ROWS`; the last tenth for a split under 20,000 rows), and training uses the rows
    before them. Europarl is in session order, so the tail is later sessions, a held-out period
    rather than a random sample that would share sessions (and repeated phrases) with training.
  * a local folder (`task.data_dir=PATH`) of TSV files with `<source_lang>` and `<target_lang>`
    header columns, plain or gzipped (read with forge.data.tsv). `train_file` / `eval_file` name
    them; null finds them by name (`*train*`; `*heldout*`, `*dev*`, `*valid*`, `*test*`).

An example becomes a prompt (the `prompt_template` with `{source}` filled in, wrapped in the
tokenizer's chat template when it has one and `chat_template` allows) and a completion (the target
+ EOS). They are stored as separate token lists; `forge.data.causal_collate` lays them out for the
loss (labels -100 on the prompt), for generation (left-padded prompt) and for GKD. See
`TranslationHandler.prepare` for truncation and context baking.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

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
from forge.data.classification import _positive_or_none, sample_indices
from forge.data.tsv import iter_rows, read_header
from forge.eval.metrics import translation_metrics

logger = logging.getLogger(__name__)

#: eval rows carved from the end of a hub dataset that has only a train split.
HUB_HELDOUT_ROWS = 2000
#: hub split names used as the eval set when present, in order of preference.
HUB_EVAL_SPLITS = ("validation", "dev", "test")
#: file-name patterns (case-insensitive) for auto-detecting the local split files.
TRAIN_PATTERNS = ("*train*",)
EVAL_PATTERNS = ("*heldout*", "*dev*", "*valid*", "*test*")
#: only these files are auto-detected (a README_train.md is not a split file).
TABLE_SUFFIXES = (".tsv", ".tsv.gz")
CHAT_MODES = ("auto", "always", "never")
SOURCE_PLACEHOLDER = "{source}"
DEFAULT_PROMPT = "Translate the following English text to French.\nEnglish: {source}\nFrench:"
EVAL_SET = "validation"
SOURCE_TEXT = "source"


@dataclass
class TranslationPairs:
    """One raw split: parallel source and target sentences."""

    sources: list[str]
    targets: list[str]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError("sources and targets must have the same length")

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices: Sequence[int]) -> "TranslationPairs":
        return TranslationPairs([self.sources[i] for i in indices], [self.targets[i] for i in indices])


# ---- local files ------------------------------------------------------------------------------


def read_pairs_tsv(path: Path, source_col: str, target_col: str) -> TranslationPairs:
    """Every row of a headed TSV (plain or gzipped) as a (source, target) pair, picked by column name.

    A row too short to hold both columns is skipped and counted (logged), so a truncated file does
    not pass silently. Reads 50,000 gzipped Europarl rows in well under a second.
    """
    rows = iter_rows(path)
    try:
        header = next(rows, None)
        if header is None:
            raise ValueError(
                f"{path}: empty file; expected a header with {source_col!r} and {target_col!r}"
            )
        missing = [c for c in (source_col, target_col) if c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}; found {header[:12]}")
        s_idx, t_idx = header.index(source_col), header.index(target_col)
        needed = max(s_idx, t_idx)
        sources: list[str] = []
        targets: list[str] = []
        skipped = 0
        for row in rows:
            if len(row) <= needed:
                skipped += 1
                continue
            sources.append(row[s_idx])
            targets.append(row[t_idx])
    finally:
        rows.close()
    if skipped:
        logger.warning(
            "%s: skipped %d row(s) lacking the %s/%s fields", path.name, skipped, source_col, target_col
        )
    return TranslationPairs(sources, targets)


def match_files(folder: Path, patterns: Sequence[str], exclude: Sequence[Path] = ()) -> list[Path]:
    """Split-file candidates in `folder`: .tsv/.tsv.gz files whose name matches a pattern."""
    found = []
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if not path.is_file() or name.startswith(".") or not name.endswith(TABLE_SUFFIXES):
            continue
        if path in exclude:
            continue
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
            found.append(path)
    return found


# ---- the hub ----------------------------------------------------------------------------------


def pairs_from_hub(split: Any, source_lang: str, target_lang: str) -> TranslationPairs:
    """A hub split with a `translation` dict column (or plain language columns) -> pairs."""
    columns = list(split.column_names)
    if "translation" in columns:
        rows = list(split["translation"])
        try:
            return TranslationPairs([r[source_lang] for r in rows], [r[target_lang] for r in rows])
        except KeyError as exc:
            found = sorted(rows[0]) if rows else []
            raise ValueError(
                f"the hub dataset's `translation` column has no language {exc}; its languages are "
                f"{found}. Set task.source_lang / task.target_lang (or task.hub_config) to match"
            ) from None
    if source_lang in columns and target_lang in columns:
        return TranslationPairs(list(split[source_lang]), list(split[target_lang]))
    raise ValueError(
        f"the hub dataset has neither a `translation` column nor {source_lang!r}/{target_lang!r} "
        f"columns; it has {columns}"
    )


def hub_heldout_rows(n: int) -> int:
    """How many rows at the end of a train-only hub split become the eval set."""
    return min(HUB_HELDOUT_ROWS, max(1, n // 10))


# ---- small config checks ----------------------------------------------------------------------


def _positive_int(key: str, value: Any, example: int) -> list[ConfigProblem]:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return [ConfigProblem(key=key, value=value, message="must be a positive integer",
                              fix=f"set {key}={example}")]
    return []


@dataclass
class _Encoded:
    """One split after tokenisation and truncation (lists aligned by example)."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    fitted_sources: list[str]
    overflowed: int = 0
    truncated_source: int = 0
    truncated_target: int = 0


class TranslationHandler(TaskDataHandler):
    """Prompt → target translation for causal LMs (Europarl EN→FR by default).

    Every key of `TranslationTaskConfig` is a constructor argument (the pipeline does
    `instantiate(cfg.task)`). `prepare` must run before `predict` (it keeps the tokenizer, which
    decoding needs).
    """

    model_kind = "causal_lm"
    primary_metric = "bleu"
    metric_names: tuple[str, ...] = ("bleu", "chrf")
    eval_set_names: tuple[str, ...] = (EVAL_SET,)

    def __init__(
        self,
        name: str,
        data_dir: Optional[str] = None,
        max_train_samples: Optional[int] = None,
        max_eval_samples: Optional[int] = None,
        max_length: int = 256,
        seed: int = 42,
        hub_dataset: str = "Helsinki-NLP/europarl",
        hub_config: str = "en-fr",
        source_lang: str = "en",
        target_lang: str = "fr",
        train_file: Optional[str] = None,
        eval_file: Optional[str] = None,
        prompt_template: str = DEFAULT_PROMPT,
        chat_template: str = "auto",
        system_prompt: Optional[str] = None,
        max_new_tokens: int = 96,
        num_beams: int = 1,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.max_train_samples = max_train_samples
        self.max_eval_samples = max_eval_samples
        self.max_length = max_length
        self.seed = seed
        self.hub_dataset = hub_dataset
        self.hub_config = hub_config
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.train_file = train_file
        self.eval_file = eval_file
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

    def source(self) -> str:
        """Where the data came from, for logs and run metadata."""
        if self.data_dir is None:
            return f"hub:{self.hub_dataset}/{self.hub_config}"
        return str(Path(self.data_dir).expanduser())

    # ---- config-time checks (no network, no weights; reads file headers only) -----------------

    def validate(self) -> list[ConfigProblem]:
        problems = _positive_or_none("task.max_train_samples", self.max_train_samples)
        problems += _positive_or_none("task.max_eval_samples", self.max_eval_samples)
        problems += _positive_int("task.max_length", self.max_length, 256)
        problems += _positive_int("task.max_new_tokens", self.max_new_tokens, 96)
        problems += _positive_int("task.num_beams", self.num_beams, 1)
        if self.chat_template not in CHAT_MODES:
            problems.append(ConfigProblem(
                key="task.chat_template", value=self.chat_template,
                message=f"must be one of {', '.join(CHAT_MODES)}",
                fix="set task.chat_template=auto (use the tokenizer's chat template when it has one)",
            ))
        if not isinstance(self.prompt_template, str) or SOURCE_PLACEHOLDER not in self.prompt_template:
            problems.append(ConfigProblem(
                key="task.prompt_template", value=self.prompt_template,
                message=f"must contain {SOURCE_PLACEHOLDER}, where the source sentence goes",
                fix='e.g. task.prompt_template="Translate to French.\\nEnglish: {source}\\nFrench:"',
            ))
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            problems.append(ConfigProblem(key="task.system_prompt", value=self.system_prompt,
                                          message="must be a string or null",
                                          fix="set task.system_prompt=null"))
        for key, lang in (("task.source_lang", self.source_lang), ("task.target_lang", self.target_lang)):
            if not isinstance(lang, str) or not lang.strip():
                problems.append(ConfigProblem(key=key, value=lang,
                                              message="must be a non-empty language code",
                                              fix=f"set {key}=en (or the column name in the data)"))
        if self.source_lang == self.target_lang:
            problems.append(ConfigProblem(key="task.target_lang", value=self.target_lang,
                                          message="equals task.source_lang", fix="set task.target_lang=fr"))
        if self.data_dir is None:
            for key, value in (("task.train_file", self.train_file), ("task.eval_file", self.eval_file)):
                if value is not None:
                    problems.append(ConfigProblem(
                        key=key, value=value,
                        message=(f"names a local file but task.data_dir is null (data comes from the "
                                 f"hub {self.hub_dataset})"),
                        fix=f"set task.data_dir=PATH to read local files, or {key}=null",
                    ))
        else:
            problems += self._resolve_files()[1]
        return problems

    def _resolve_files(self) -> tuple[dict[str, Path], list[ConfigProblem]]:
        """{"train": path, "validation": path} in data_dir, and the problems that stop that."""
        folder = Path(str(self.data_dir)).expanduser()
        if not folder.is_dir():
            what = "directory does not exist" if not folder.exists() else "is not a directory"
            return {}, [ConfigProblem(
                key="task.data_dir", value=self.data_dir, message=what,
                fix=(f"point task.data_dir at a folder with train and held-out TSV files (columns "
                     f"{self.source_lang}, {self.target_lang}), or set task.data_dir=null to load "
                     f"{self.hub_dataset} from the hub"),
            )]
        files: dict[str, Path] = {}
        problems: list[ConfigProblem] = []
        for split, key, name, patterns in (
            ("train", "task.train_file", self.train_file, TRAIN_PATTERNS),
            (EVAL_SET, "task.eval_file", self.eval_file, EVAL_PATTERNS),
        ):
            path, problem = self._resolve_one(folder, key, name, patterns, exclude=list(files.values()))
            if problem is not None:
                problems.append(problem)
            else:
                files[split] = path
        for split, path in files.items():
            key = "task.train_file" if split == "train" else "task.eval_file"
            problems += self._header_problems(path, key)
        return files, problems

    def _resolve_one(self, folder: Path, key: str, name: Optional[str], patterns: Sequence[str],
                     exclude: list[Path]) -> tuple[Optional[Path], Optional[ConfigProblem]]:
        present = sorted(p.name for p in folder.iterdir() if p.is_file())
        if name is not None:
            path = folder / name
            if path.is_file():
                return path, None
            return None, ConfigProblem(
                key=key, value=name, message=f"no such file in {folder} (files there: {present})",
                fix=(f"set {key} to one of those names (relative to task.data_dir), or {key}=null "
                     "to find it by name"),
            )
        found = match_files(folder, patterns, exclude)
        if len(found) == 1:
            return found[0], None
        pattern_text = " or ".join(patterns)
        if not found:
            message = (f"found no {'/'.join(TABLE_SUFFIXES)} file matching {pattern_text} in {folder} "
                       f"(files there: {present})")
        else:
            message = f"several files match {pattern_text} in {folder}: {[p.name for p in found]}"
        return None, ConfigProblem(
            key=key, value=None, message=message,
            fix=f"set {key}=<file name> (relative to task.data_dir) to say which one",
        )

    def _header_problems(self, path: Path, key: str) -> list[ConfigProblem]:
        try:
            header = read_header(path)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            return [ConfigProblem(key=key, value=path.name, message=f"cannot be read as UTF-8 TSV ({exc})",
                                  fix="point it at a plain or gzipped tab-separated file")]
        lacking = [c for c in (self.source_lang, self.target_lang) if c not in header]
        if not lacking:
            return []
        return [ConfigProblem(
            key=key, value=path.name,
            message=f"header has no column(s) {lacking} (found {header[:12]})",
            fix=(f"use a TSV whose first row names the columns {self.source_lang} and {self.target_lang}, "
                 "or set task.source_lang / task.target_lang to its column names"),
        )]

    # ---- loading ------------------------------------------------------------------------------

    def capped_splits(self) -> dict[str, TranslationPairs]:
        """{"train", "validation"} pairs with max_train_samples / max_eval_samples applied.

        The caps draw `sample_indices(n, cap, seed)`, the same seeded subset as classification
        tasks. From the hub the subset is selected BEFORE the rows are turned into Python strings,
        so capping a 2M-row dataset does not materialise all of it.
        """
        if self.data_dir is None:
            return self._load_hub()
        files, problems = self._resolve_files()
        if problems:
            raise ConfigError(problems)
        capped = {}
        for split, path in files.items():
            pairs = read_pairs_tsv(path, self.source_lang, self.target_lang)
            cap = self.max_train_samples if split == "train" else self.max_eval_samples
            indices = sample_indices(len(pairs), cap, self.seed)
            capped[split] = pairs if len(indices) == len(pairs) else pairs.subset(indices)
        return capped

    def _load_hub(self) -> dict[str, TranslationPairs]:
        import datasets

        dataset_dict = datasets.load_dataset(self.hub_dataset, self.hub_config)
        train = dataset_dict["train"]
        eval_split = next((s for s in HUB_EVAL_SPLITS if s in dataset_dict), None)
        if eval_split is not None:
            evals, n_train = dataset_dict[eval_split], len(train)
        else:
            n_eval = hub_heldout_rows(len(train))
            n_train = len(train) - n_eval
            evals = train.select(range(n_train, len(train)))
        train_idx = sample_indices(n_train, self.max_train_samples, self.seed)
        eval_idx = sample_indices(len(evals), self.max_eval_samples, self.seed)
        return {
            "train": pairs_from_hub(train.select(train_idx), self.source_lang, self.target_lang),
            EVAL_SET: pairs_from_hub(evals.select(eval_idx), self.source_lang, self.target_lang),
        }

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
        """The prompt text for one source sentence (what the model sees before the target).

        Chat: [system (context, else system_prompt, else none: the template's own default)] +
        user (the filled prompt_template), then the generation prompt. Plain: the filled template,
        after `context + "\\n\\n"` when a context is given.
        """
        text = self.prompt_template.replace(SOURCE_PLACEHOLDER, source)
        if not self._use_chat_for(tokenizer):
            return text if context is None else f"{context}\n\n{text}"
        system = context if context is not None else self.system_prompt
        messages = [] if system is None else [{"role": "system", "content": system}]
        messages.append({"role": "user", "content": text})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

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

    def _encode_split(self, pairs: TranslationPairs, tokenizer: Any, eos: int) -> _Encoded:
        prompts = [self.render_prompt(s, tokenizer) for s in pairs.sources]
        prompt_ids = self._encode_prompts(prompts, tokenizer)
        completions = [self.completion_text(p, t) for p, t in zip(prompts, pairs.targets)]
        completion_ids = [
            list(ids) + [eos] for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]
        ] if completions else []
        encoded = _Encoded(prompts, prompt_ids, completion_ids, list(pairs.sources))
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

    def _truncate(self, enc: _Encoded, i: int, tokenizer: Any, overhead: int) -> None:
        """Make example i fit max_length: cut the END of the source first, keeping the full target
        (the usual case: a long source). Only when the target alone leaves no room for any source
        token are both cut, each keeping a share proportional to its length (a translation pair cut
        in proportion stays roughly aligned); a cut target loses its EOS, so the model is not taught
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

    def prepare(self, tokenizer: Any, teacher_context: Optional[str] = None) -> PreparedData:
        """Load, cap, render, tokenise and truncate both splits.

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

        if teacher_context is not None and not str(teacher_context).strip():
            raise ValueError("teacher_context is empty; pass None for no context baking")
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("the tokenizer has no EOS token; a translation target must end with one")
        self._tokenizer = None
        self._use_chat = self.uses_chat_template(tokenizer)
        self._tokenizer = tokenizer
        if not self._use_chat and self.system_prompt is not None:
            logger.warning(
                "task.system_prompt is ignored: prompts are plain text (no chat template in use)"
            )

        splits = self.capped_splits()
        datasets_: dict[str, Any] = {}
        info_truncated: dict[str, dict[str, int]] = {}
        examples: dict[str, str] = {}
        empty = [split for split, pairs in splits.items() if not len(pairs)]
        if empty:
            raise ValueError(
                f"{self.name}: the {' and '.join(empty)} split from {self.source()} has no rows"
            )
        for split, pairs in splits.items():
            enc = self._encode_split(pairs, tokenizer, int(eos))
            columns: dict[str, list] = {
                SOURCE_TEXT: list(pairs.sources),
                TARGET_TEXT: list(pairs.targets),
                PROMPT: enc.prompt_ids,
                COMPLETION: enc.completion_ids,
            }
            if teacher_context is not None:
                teacher_prompts = [
                    self.render_prompt(s, tokenizer, teacher_context) for s in enc.fitted_sources
                ]
                columns[TEACHER_PROMPT] = self._encode_prompts(teacher_prompts, tokenizer)
                if teacher_prompts and split == "train":
                    examples["teacher_prompt_example"] = teacher_prompts[0]
            if enc.prompts and split == "train":
                examples["prompt_example"] = enc.prompts[0]
            datasets_[split] = Dataset.from_dict(columns)
            info_truncated[split] = {"examples": enc.overflowed, "source": enc.truncated_source,
                                     "target": enc.truncated_target}
            if enc.overflowed:
                logger.warning(
                    "%s %s: %d of %d example(s) exceeded task.max_length=%d; cut the source of %d and "
                    "the target of %d", self.name, split, enc.overflowed, len(pairs), self.max_length,
                    enc.truncated_source, enc.truncated_target,
                )

        eval_sets = {name: datasets_[name] for name in self.eval_set_names}
        info = {
            "task": self.name,
            "source": self.source(),
            "source_lang": self.source_lang,
            "target_lang": self.target_lang,
            "text_columns": [SOURCE_TEXT, TARGET_TEXT],
            "num_train": len(datasets_["train"]),
            "num_eval": {name: len(ds) for name, ds in eval_sets.items()},
            "chat_template": self._use_chat,
            "prompt_example": examples.get("prompt_example"),
            "teacher_context": teacher_context,
            "metrics": list(self.metric_names),
            "primary_metric": self.primary_metric,
            "max_length": self.max_length,
            "truncated": info_truncated,
        }
        if teacher_context is not None:
            info["teacher_prompt_example"] = examples.get("teacher_prompt_example")
        pad = pad_token_id_for(tokenizer)
        return PreparedData(
            train=datasets_["train"],
            eval_sets=eval_sets,
            collator=CausalLMCollator(pad),
            eval_collator=CausalLMEvalCollator(pad),
            info=info,
        )

    # ---- prediction and scoring ---------------------------------------------------------------

    def predict(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> list[str]:
        """Generated translations for a batch: greedy (num_beams 1) or beam search from the
        left-padded prompts, new tokens only, special tokens dropped, whitespace stripped, first
        line only (small models often run on with another "English:" line). Works for plain and
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
        if device is not None:
            ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            output = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
                pad_token_id=pad_token_id_for(tokenizer),
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = output[:, ids.shape[1]:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [first_line(text) for text in texts]

    def references(self, batch: Mapping[str, Any]) -> list[str]:
        return list(batch["references"])

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return translation_metrics(predictions, references, which=self.metric_names)


def first_line(text: str) -> str:
    """The first non-empty line of a generation, stripped (the translation; the rest is run-on)."""
    return text.strip().split("\n", 1)[0].strip()
