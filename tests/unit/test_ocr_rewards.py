"""reward=olmocr_checks: hand-made completions against real olmOCR-bench pages give the pass rates
olmocr's own checks give (each JSONL row built by olmocr's loader, run on the completion), the
parsed tests are cached per JSON string, and a reference without tests is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.data.ocr.page_tests import load_page_tests, page_tests_json
from forge.data.olmocr_bench_task import OlmocrBenchHandler
from forge.rewards.base import RewardError
from forge.rewards.ocr import OlmocrChecks
from tests.unit.ocr_support import OCR_DATA

OLD_DOCS = OCR_DATA / "olmocr-bench" / "dev_history" / "old_docs"
SAMPLE = OCR_DATA / "olmocr-bench" / "sample_data"

LETTER = (  # 15.pdf of old_docs, as a careful transcriber would write the parts its tests check
    "J.M. VALE BUTLER & VALE ATTORNEYS AT LAW SOUTHERN BUILDING WASINGTON, D.C. May 22nd, 1914.\n\n"
    "Theodore Roosevelt, Oyster Bay, L. I.\n\n"
    "Dear Colonel: Replying to my telegram, Mrs. Butler and I will be delighted to have you with us on "
    "the occasion of your lecture before the National Geographical Society. Trusting that we will have the "
    "pleasure of seeing you soon, and that your health is fully restored, I am, Very sincerely yours, Marion Butler"
)


def olmocr_rates(jsonl: Path, pdf: str, completions: list[str]) -> list[float]:
    """The reference: every row of the page built by olmocr's own loader, plus olmocr's automatic
    baseline test, each run on the completion by olmocr."""
    from olmocr.bench.tests import BaselineTest, load_single_test

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    tests = [load_single_test(row) for row in rows if row["pdf"] == pdf]
    tests.append(BaselineTest(pdf=pdf, page=1, id=f"{pdf}_baseline", type="baseline"))
    return [sum(t.run(md)[0] for t in tests) / len(tests) for md in completions]


def reward(completions: list[str], references: list[str]) -> list[float]:
    return OlmocrChecks()(completions, page_tests=references, prompts=[[1]] * len(completions))


def test_letter_page_rates_equal_olmocrs_own() -> None:
    target = OlmocrBenchHandler(name="olmocr_bench", data_dir=str(OLD_DOCS)).load_splits()["train"].targets[0]
    assert {t.test.pdf for t in load_page_tests(target)} == {"15.pdf"}  # 8 JSONL tests + the baseline
    header = "CABLE ADDRESS, BUVALE\n\n" + LETTER  # an absent test's letterhead kept
    paragraphs = LETTER.split("\n\n")
    swapped = "\n\n".join([paragraphs[0], paragraphs[2], paragraphs[1]])  # address after the body
    completions = [LETTER, header, swapped, ""]
    rates = reward(completions, [target] * len(completions))
    assert rates == pytest.approx(olmocr_rates(OLD_DOCS / "old_docs.jsonl", "15.pdf", completions))
    # by hand: all 9 pass; the absent letterhead fails; one order test fails; on an empty page only
    # the two absent tests pass (4 present, 2 order and the baseline fail)
    assert rates == pytest.approx([1.0, 8 / 9, 8 / 9, 2 / 9])


def test_table_page_rates_equal_olmocrs_own() -> None:
    jsonl = SAMPLE / "dataset.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    page_rows = [("dataset.jsonl", row) for row in rows if row["pdf"] == "olmo2-pg4.pdf"]
    baseline = {"pdf": "olmo2-pg4.pdf", "page": 1, "id": "olmo2-pg4.pdf_baseline", "type": "baseline"}
    target = page_tests_json(page_rows + [("baseline", baseline)])
    olmocr_output = (SAMPLE / "olmocr_pipeline" / "olmo2-pg4_pg1_repeat1.md").read_text()
    lines = olmocr_output.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("| ")][2:]  # data rows
    flipped = lines[: table[0]] + [lines[i] for i in reversed(table)] + lines[table[-1] + 1:]
    completions = [olmocr_output, "\n".join(flipped), "Table 1 Composition of the pretraining data for OLMo 2."]
    rates = reward(completions, [target] * 3)
    assert rates == pytest.approx(olmocr_rates(jsonl, "olmo2-pg4.pdf", completions))
    assert rates[1] < rates[0]  # up/down neighbours swapped
    assert rates[2] == pytest.approx(2 / 11)  # the caption (present) and the baseline; no table


def test_tests_are_parsed_once_per_json_string() -> None:
    target = page_tests_json([("t.jsonl", {"pdf": "x.pdf", "page": 1, "id": "p", "type": "present", "text": "hi"})])
    first = load_page_tests(target)
    hits = load_page_tests.cache_info().hits
    assert reward(["hi", "ho", "hi there"], [target] * 3) == [1.0, 0.0, 1.0]
    assert load_page_tests(target) is first
    assert load_page_tests.cache_info().hits >= hits + 4


def test_a_reference_without_tests_is_refused_by_row() -> None:
    target = page_tests_json([("t.jsonl", {"pdf": "x.pdf", "page": 1, "id": "p", "type": "present", "text": "hi"})])
    with pytest.raises(RewardError, match="column 'page_tests' row 1 holds no page tests.*not page-tests JSON"):
        reward(["a", "b"], [target, "# A page of markdown"])
    bad_row = page_tests_json([("t.jsonl", {"pdf": "x.pdf", "page": 1, "id": "q", "type": "presnet", "text": "hi"})])
    with pytest.raises(RewardError, match="olmocr cannot build test 'q'"):
        reward(["a"], [bad_row])
    with pytest.raises(RewardError, match="needs the 'page_tests' column"):
        OlmocrChecks()(["a"], prompts=[[1]])
    assert [p.key for p in OlmocrChecks(column="").check()] == ["reward.olmocr_checks.column"]
