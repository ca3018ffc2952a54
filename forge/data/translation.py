"""Translation with a decoder-only LM: prompt → target, loss on the target tokens only.

The prompt → completion machinery (prompts, chat templates, truncation, context baking, `prepare`,
generation) is `forge.data.prompted.PromptCompletionHandler`; this module says where translation
pairs come from and how they are scored (sacrebleu BLEU and chrF). Two sources, the same result:
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
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from forge.config.errors import ConfigError, ConfigProblem, DataError
from forge.data.prompt_pairs import PromptPairs
from forge.data.prompted import EVAL_SET, PromptCompletionHandler
from forge.data.tsv import data_error, iter_rows, no_usable_rows, read_header
from forge.eval.heldout_text import HeldoutPerplexity
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
DEFAULT_PROMPT = "Translate the following English text to French.\nEnglish: {source}\nFrench:"

#: a split of parallel sentences: sources in the source language, targets in the target language.
TranslationPairs = PromptPairs


# ---- local files ------------------------------------------------------------------------------


def read_pairs_tsv(path: Path, source_col: str, target_col: str) -> TranslationPairs:
    """Every row of a headed TSV (plain or gzipped) as a (source, target) pair, picked by column name.

    A row too short to hold both columns is skipped and counted (logged), so a truncated file does
    not pass silently; a file with no usable row is a DataError. Reads 50,000 gzipped Europarl rows
    in well under a second.
    """
    fix = (f"use a UTF-8 TSV whose first row names the columns {source_col} and {target_col}, with one "
           "sentence pair per row, or set task.source_lang / task.target_lang to its column names")
    rows = iter_rows(path)
    try:
        header = next(rows, None)
        if header is None:
            raise data_error(path, f"empty file; expected a header with {source_col!r} and {target_col!r}", fix)
        missing = [c for c in (source_col, target_col) if c not in header]
        if missing:
            raise data_error(path, f"header lacks column(s) {missing}; found {header[:12]}", fix)
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
    if not sources:
        raise no_usable_rows(path, skipped, f"they lack the {source_col}/{target_col} fields", fix)
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


def pairs_from_hub(split: Any, source_lang: str, target_lang: str,
                   dataset: str = "the hub dataset") -> TranslationPairs:
    """A hub split with a `translation` dict column (or plain language columns) -> pairs."""
    columns = list(split.column_names)
    fix = "set task.source_lang / task.target_lang (or task.hub_config) to match"
    if "translation" in columns:
        rows = list(split["translation"])
        try:
            return TranslationPairs([r[source_lang] for r in rows], [r[target_lang] for r in rows])
        except KeyError as exc:
            found = sorted(rows[0]) if rows else []
            raise data_error(dataset, f"its `translation` column has no language {exc}; its languages "
                             f"are {found}", fix) from None
    if source_lang in columns and target_lang in columns:
        return TranslationPairs(list(split[source_lang]), list(split[target_lang]))
    raise data_error(dataset, f"has neither a `translation` column nor {source_lang!r}/{target_lang!r} "
                     f"columns; it has {columns}", fix)


def hub_heldout_rows(n: int) -> int:
    """How many rows at the end of a train-only hub split become the eval set."""
    return min(HUB_HELDOUT_ROWS, max(1, n // 10))


# ---- the handler ------------------------------------------------------------------------------


class TranslationHandler(PromptCompletionHandler):
    """Prompt → target translation for causal LMs (Europarl EN→FR by default).

    Every key of `TranslationTaskConfig` is a constructor argument (the pipeline does
    `instantiate(cfg.task)`). It declares only its own; the prompt and generation keys (and the
    max_length default, 256) are `PromptCompletionHandler`'s, the shared fields `TaskDataHandler`'s.
    """

    primary_metric = "bleu"
    greater_is_better = True  # BLEU and chrF are scores
    metric_names: tuple[str, ...] = ("bleu", "chrf")

    def __init__(
        self,
        name: str,
        hub_dataset: str = "Helsinki-NLP/europarl",
        hub_config: str = "en-fr",
        source_lang: str = "en",
        target_lang: str = "fr",
        train_file: Optional[str] = None,
        eval_file: Optional[str] = None,
        prompt_template: str = DEFAULT_PROMPT,
        perplexity: Optional[Mapping[str, Any]] = None,
        **common: Any,
    ) -> None:
        super().__init__(name=name, prompt_template=prompt_template, **common)
        self.perplexity = perplexity  # as configured; the spec below is what scores
        wanted = dict(perplexity or {})
        self.heldout_perplexity = HeldoutPerplexity(**wanted) if wanted.pop("enabled", False) else None
        self._heldout_text: Optional[list[str]] = None
        self.hub_dataset = hub_dataset
        self.hub_config = hub_config
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.train_file = train_file
        self.eval_file = eval_file

    def source(self) -> str:
        """Where the data came from, for logs and run metadata."""
        if self.data_dir is None:
            return f"hub:{self.hub_dataset}/{self.hub_config}"
        return str(Path(self.data_dir).expanduser())

    def describe(self, train: Any, eval_sets: Any) -> dict[str, Any]:
        return {**super().describe(train, eval_sets), "source_lang": self.source_lang,
                "target_lang": self.target_lang}

    # ---- config-time checks (no network, no weights; reads file headers only) -----------------

    def validate(self) -> list[ConfigProblem]:
        spec = self.heldout_perplexity
        problems = super().validate() + (spec.problems() if spec is not None else [])
        for key, lang in (("task.source_lang", self.source_lang), ("task.target_lang", self.target_lang)):
            if not isinstance(lang, str) or not lang.strip():
                problems.append(ConfigProblem(key=key, value=lang,
                                              message="must be a non-empty language code",
                                              fix=f"set {key}=en (or the column name in the data)"))
        if self.source_lang == self.target_lang:
            problems.append(ConfigProblem(key="task.target_lang", value=self.target_lang,
                                          message="equals task.source_lang", fix="set task.target_lang=fr"))
        if self.data_dir is not None:
            return problems + self._resolve_files()[1]
        for key, value in (("task.train_file", self.train_file), ("task.eval_file", self.eval_file)):
            if value is not None:
                problems.append(ConfigProblem(
                    key=key, value=value,
                    message=(f"names a local file but task.data_dir is null (data comes from the "
                             f"hub {self.hub_dataset})"),
                    fix=f"set task.data_dir=PATH to read local files, or {key}=null",
                ))
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

    def model_metrics(self, model: Any, set_name: str) -> dict[str, float]:
        """With `task.perplexity`: the model's perplexity on the whole held-out split's chosen side,
        read in order as running text (forge.eval.heldout_text), beside BLEU and chrF."""
        spec = self.heldout_perplexity
        if spec is None or set_name != EVAL_SET or self._tokenizer is None:
            return {}
        if self._heldout_text is None:
            pairs = self._heldout_pairs()
            self._heldout_text = list(pairs.targets if spec.side == "target" else pairs.sources)
        return spec.score(model, self._heldout_text, self._tokenizer)

    def _heldout_pairs(self) -> TranslationPairs:
        """The held-out split alone (a local eval file is read without the training file)."""
        if self.data_dir is None:
            return self.load_splits()[EVAL_SET]
        files, problems = self._resolve_files()
        if problems:
            raise ConfigError(problems)
        return read_pairs_tsv(files[EVAL_SET], self.source_lang, self.target_lang)

    def load_splits(self) -> dict[str, TranslationPairs]:
        """{"train", "validation"} pairs, uncapped, from the local files or the hub."""
        if self.data_dir is None:
            return self._load_hub(lambda split, n: range(n))
        files, problems = self._resolve_files()
        if problems:
            raise ConfigError(problems)
        return {split: read_pairs_tsv(path, self.source_lang, self.target_lang) for split, path in files.items()}

    def load_capped_splits(self) -> dict[str, TranslationPairs]:
        """The caps draw `sample_indices(n, cap, seed)`, the same seeded subset as classification
        tasks. From the hub the subset is selected BEFORE the rows are turned into Python strings,
        so capping a 2M-row dataset does not materialise all of it."""
        if self.data_dir is None:
            return self._load_hub(self.split_indices)
        return super().load_capped_splits()

    def _load_hub(self, select: Callable[[str, int], Sequence[int]]) -> dict[str, TranslationPairs]:
        """Train and eval pairs from the hub; `select(split, n)` names the rows to keep."""
        import datasets

        dataset_dict = datasets.load_dataset(self.hub_dataset, self.hub_config)
        where = f"hub dataset {self.hub_dataset} ({self.hub_config})"
        train = dataset_dict["train"]
        eval_split = next((s for s in HUB_EVAL_SPLITS if s in dataset_dict), None)
        if eval_split is not None:
            evals, n_train = dataset_dict[eval_split], len(train)
        else:
            n_train = len(train) - hub_heldout_rows(len(train))
            evals = train.select(range(max(0, n_train), len(train)))
        for split, n in (("train", n_train), (eval_split or "held-out end of train", len(evals))):
            if n <= 0:
                raise DataError(f"{where}: split {split!r} has no rows (train has {len(train)}). Fix: "
                                "check task.hub_dataset / task.hub_config, or use local files (task.data_dir)")
        return {
            "train": pairs_from_hub(train.select(select("train", n_train)), self.source_lang,
                                    self.target_lang, where),
            EVAL_SET: pairs_from_hub(evals.select(select(EVAL_SET, len(evals))), self.source_lang,
                                     self.target_lang, where),
        }

    # ---- scoring ------------------------------------------------------------------------------

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return translation_metrics(predictions, references, which=self.metric_names)
