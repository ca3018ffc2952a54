"""forge.data.ocr.synth_tests: olmOCR-style tests derived from synthetic pages load with olmocr's own
loader, the true markdown passes every one of them, a scrambled page fails some, and the same JSON
drives reward=olmocr_checks and the pass_rate metrics on ocr_synth pages."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from forge.data.ocr.page_tests import load_page_tests
from forge.data.ocr.synth import SynthConfig, synth_split
from forge.data.ocr.synth_tests import synth_page_tests, synth_tests_for_pages
from forge.eval.olmocr_checks import page_pass_rate
from forge.eval.olmocr_metrics import pass_rate_metrics
from forge.rewards.ocr import OlmocrChecks

CONFIG = SynthConfig(width=448, height=448, margin=24, font_size=14, blocks=5)


@pytest.fixture(scope="module")
def pages() -> list[str]:
    return [page.markdown for page in synth_split(CONFIG, 3, 16)]


@pytest.fixture(scope="module")
def page_tests(pages: list[str]) -> list[str]:
    return synth_tests_for_pages(pages, seed=7)


def scrambled(markdown: str, seed: int) -> str:
    """The page's blocks in reverse order, the words of each text line shuffled (tables kept)."""
    rng = random.Random(seed)
    lines = []
    for block in reversed(markdown.split("\n\n")):
        words = block.split(" ")
        lines.append(block if block.startswith("|") else " ".join(rng.sample(words, len(words))))
    return "\n\n".join(lines)


def test_rows_follow_the_bench_schema_and_load_with_olmocr(page_tests: list[str]) -> None:
    from olmocr.bench.tests import load_single_test

    kinds = Counter()
    for text in page_tests:
        for entry in json.loads(text)["tests"]:
            row = entry["row"]
            assert {"pdf", "page", "id", "type"} <= set(row)
            load_single_test(row)  # olmocr's own loader takes the row as it is
            kinds[(entry["source"], row["type"])] += 1
    assert set(kinds) == {("ocr_synth", t) for t in ("present", "absent", "order", "table")} | {("baseline", "baseline")}
    assert kinds[("baseline", "baseline")] == len(page_tests)  # every page, as olmocr's benchmark adds it


def test_true_markdown_passes_all_and_scrambled_fails_some(pages: list[str], page_tests: list[str]) -> None:
    for i, (markdown, text) in enumerate(zip(pages, page_tests)):
        tests = load_page_tests(text)
        assert page_pass_rate(tests, markdown) == 1.0, i
        assert page_pass_rate(tests, scrambled(markdown, i)) < 1.0, i


def test_deterministic_in_its_arguments(pages: list[str]) -> None:
    assert synth_page_tests(pages[0], pages[1], 5) == synth_page_tests(pages[0], pages[1], 5)
    assert synth_page_tests(pages[0], pages[1], 5) != synth_page_tests(pages[0], pages[2], 6)


def test_absent_text_comes_from_the_other_page(pages: list[str]) -> None:
    rows = [e["row"] for e in json.loads(synth_page_tests(pages[0], pages[1], 0))["tests"]]
    absent = [row["text"] for row in rows if row["type"] == "absent"]
    assert absent and all(text in " ".join(pages[1].split()) for text in absent)


def test_metric_and_reward_on_synth_pages(pages: list[str], page_tests: list[str]) -> None:
    assert pass_rate_metrics(pages, page_tests)["pass_rate"] == 1.0
    shifted = pass_rate_metrics(pages[1:] + pages[:1], page_tests)  # each page answered with the next
    assert shifted["pass_rate/absent"] < 1.0 and shifted["pass_rate/present"] == 0.0
    rewards = OlmocrChecks()([pages[0], scrambled(pages[0], 0), ""], page_tests=[page_tests[0]] * 3)
    assert rewards[0] == 1.0 and rewards[1] < 1.0 and rewards[2] < 0.5


def test_a_page_without_sentences_is_refused() -> None:
    with pytest.raises(ValueError, match="no olmOCR test can be derived"):
        synth_page_tests("# Hi\n\n| a |\n| --- |\n| a |", "", 0)
