"""olmOCR-style unit tests for a synthetic page, derived from its markdown.

olmOCR-bench scores a page by pass/fail checks rather than by edit distance: a sentence is there, a
stray header is not, two passages come in reading order, a table cell sits under and beside the
right neighbours. A synthetic page (`forge.data.ocr.synth`) has exact markdown, so the same kinds of
check can be written for it, and then `reward=olmocr_checks` and the `pass_rate` metrics
(`forge.eval.olmocr_metrics`) score ocr_synth pages exactly as they score the benchmark's:

- present: a sentence of one of the page's paragraphs (a heading or list item when it has none);
- absent: a sentence of *another* page, which this page does not contain (a model that writes
  plausible text from memory instead of reading fails it);
- order: the openings of two blocks (a table's: its header row), the earlier one first;
- table: a body cell with its up and left neighbours (olmocr's `TableTest`);
- baseline: olmocr's sanity check (some text, no endless repetition, no disallowed characters),
  which `olmocr.bench.benchmark` adds to every page that has none and scores as its own group, so
  an empty answer, which passes every absent test, still scores low.

Rows use olmOCR-bench's JSONL schema and are built by olmocr's own loader; every test is run on the
true markdown before it is kept, so the page's own markdown always passes all its tests (a check
olmocr's normalisation makes ambiguous is dropped, not shipped). The result is page-tests JSON
(`forge.data.ocr.page_tests`), the form `task=olmocr_bench` targets take.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Optional, Sequence

from forge.data.ocr.olmocr_bench import BASELINE_SOURCE
from forge.data.ocr.page_tests import page_tests_json

#: The group synthetic tests are scored in (olmocr's per-JSONL-file average has one group here).
SOURCE = "ocr_synth"
#: How many tests of each kind a page gets at most (tables: one per table, up to this many).
PRESENT_TESTS, ABSENT_TESTS, ORDER_TESTS, TABLE_TESTS = 2, 1, 1, 2
#: A sentence shorter than this many words is too easy to match by chance (olmocr matches fuzzily).
MIN_WORDS = 3
#: An order test compares the first words of two blocks.
ORDER_WORDS = 6

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MARKUP = re.compile(r"^(#+ |- |\d+\. )")


def _blocks(markdown: str) -> list[str]:
    return [block.strip() for block in markdown.split("\n\n") if block.strip()]


def _is_table(block: str) -> bool:
    return block.startswith("|")


def _plain_lines(block: str) -> list[str]:
    """A block's lines without heading / list markers: what the page shows."""
    return [_MARKUP.sub("", line).strip() for line in block.splitlines() if line.strip()]


def _sentences(block: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(_plain_lines(block))) if len(s.split()) >= MIN_WORDS]


def _present_texts(blocks: list[str], rng: random.Random) -> list[str]:
    """Sentences from different paragraphs; headings and list items when there are no paragraphs."""
    prose = [b for b in blocks if not _is_table(b) and not _MARKUP.match(b)]
    pool = [_sentences(b) for b in prose] or [_sentences(b) for b in blocks if not _is_table(b)]
    pool = [s for s in pool if s]
    rng.shuffle(pool)
    return [rng.choice(sentences) for sentences in pool[:PRESENT_TESTS]]


def _absent_texts(other_markdown: str, rng: random.Random) -> list[str]:
    sentences = [s for b in _blocks(other_markdown) if not _is_table(b) for s in _sentences(b)]
    rng.shuffle(sentences)
    return sentences[: ABSENT_TESTS * 4]  # spares: a sentence this page also holds fails the self-check


def _opening(block: str) -> str:
    """How a block starts, as the markdown writes it: the first words of its first line (a list's
    first item), or a table's header row (`A | B | C`, a substring of its `| A | B | C |` line)."""
    if _is_table(block):
        return " | ".join(cell.strip() for cell in block.splitlines()[0].strip().strip("|").split("|"))
    return " ".join(_plain_lines(block)[0].split()[:ORDER_WORDS])


def _order_pairs(blocks: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """Openings of two blocks, the earlier first; each must occur once on the page, or the check
    could pass on a repeat of it elsewhere (an opening alone is rarely that ambiguous)."""
    openings = [o for o in map(_opening, blocks) if len(o.split()) >= 2]
    openings = [o for o in openings if "\n".join(blocks).count(o) == 1]
    pairs = [(openings[i], openings[j]) for i in range(len(openings)) for j in range(i + 1, len(openings))]
    rng.shuffle(pairs)
    return pairs[: ORDER_TESTS * 4]


def _table_cells(markdown: str, rng: random.Random) -> list[dict[str, str]]:
    """One body cell per table with its up (and left, past the first column) neighbour, read with
    olmocr's own markdown-table parser; cells whose text repeats in their table are skipped."""
    from olmocr.bench.tests import parse_markdown_tables

    chosen = []
    for table in parse_markdown_tables(markdown):
        grid = table.data
        values = [str(v) for v in grid.flatten()]
        spots = [(r, c) for r in range(1, grid.shape[0]) for c in range(grid.shape[1])
                 if str(grid[r, c]).strip() and values.count(str(grid[r, c])) == 1]
        if spots:
            r, c = rng.choice(spots)
            cell = {"cell": str(grid[r, c]), "up": str(grid[r - 1, c])}
            chosen.append(cell if c == 0 else {**cell, "left": str(grid[r, c - 1])})
    return chosen[:TABLE_TESTS]


def _keep_passing(candidates: list[dict[str, Any]], markdown: str, want: int) -> list[dict[str, Any]]:
    """The first `want` rows olmocr builds and the true markdown passes."""
    from olmocr.bench.tests import load_single_test

    kept = []
    for row in candidates:
        if len(kept) == want:
            break
        try:
            passed, _ = load_single_test(row).run(markdown)
        except Exception:  # olmocr refuses the row (e.g. text that normalises to nothing)
            continue
        if passed:
            kept.append(row)
    return kept


def synth_page_tests(markdown: str, other_markdown: str, seed: int) -> str:
    """Page-tests JSON for a synthetic page: present / absent / order / table rows in olmOCR-bench's
    schema, chosen with `random.Random(seed)`, plus the baseline; absent sentences come from
    `other_markdown`. The same arguments give the same string.

    Raises ValueError when no test can be derived (a page without a sentence of MIN_WORDS words).
    """
    rng = random.Random(seed)
    blocks = _blocks(markdown)
    base = {"pdf": f"ocr_synth_{seed}.pdf", "page": 1, "max_diffs": 0}
    kinds: list[tuple[str, list[dict[str, Any]], int]] = [
        ("present", [{"text": t} for t in _present_texts(blocks, rng)], PRESENT_TESTS),
        ("absent", [{"text": t} for t in _absent_texts(other_markdown, rng)], ABSENT_TESTS),
        ("order", [{"before": a, "after": b} for a, b in _order_pairs(blocks, rng)], ORDER_TESTS),
        ("table", _table_cells(markdown, rng), TABLE_TESTS),
    ]
    rows = []
    for kind, fields, want in kinds:
        candidates = [{**base, "id": f"synth_{seed}_{kind}_{n}", "type": kind, **f} for n, f in enumerate(fields)]
        rows += [(SOURCE, row) for row in _keep_passing(candidates, markdown, want)]
    if not rows:
        raise ValueError(f"no olmOCR test can be derived from this page's markdown: {markdown[:80]!r}")
    baseline = {"pdf": base["pdf"], "page": 1, "id": f"synth_{seed}_baseline", "type": "baseline"}
    rows += [(BASELINE_SOURCE, row) for row in _keep_passing([baseline], markdown, 1)]
    return page_tests_json(rows)


def synth_tests_for_pages(markdowns: Sequence[str], seed: int,
                          derive: Optional[Callable[[int, int], int]] = None) -> list[str]:
    """Page-tests JSON for each of a split's pages, each page's absent text drawn from the next page
    (the last from the first), seeded per page: `derive(seed, i)`, by default `seed + i`."""
    derive = derive or (lambda base, i: base + i)
    n = len(markdowns)
    return [synth_page_tests(md, markdowns[(i + 1) % n] if n > 1 else "", derive(seed, i))
            for i, md in enumerate(markdowns)]
