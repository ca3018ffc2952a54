"""Draw a random document (a tuple of blocks) from a seeded `random.Random` and a SynthConfig.

Every choice goes through the one `rng` handed in, in a fixed order, so a seed fixes the document;
nothing here reads a clock, the environment or Python's `hash()`. Text is words from the embedded
vocabulary, sentence-cased so no paragraph starts with something markdown would read as syntax (a
number and a dot would be a list item, `#` a heading).
"""

from __future__ import annotations

import random
from typing import Callable

from forge.data.ocr.synth_config import SynthConfig
from forge.data.ocr.synth_document import Block, Columns, Equation, Heading, ListBlock, Paragraph, Table
from forge.data.ocr.synth_vocab import VARIABLES, number, word

#: how a sentence introduces an inline math expression.
MATH_LEADS: tuple[str, ...] = ("We have", "Then", "So", "Note that", "It follows that", "Here")
#: chance that a word of running text is a number instead.
NUMBER_PROB = 0.08
#: chance that a table body cell past the first column is a number (the first column labels rows).
TABLE_NUMBER_PROB = 0.8


def generate_document(config: SynthConfig, rng: random.Random) -> tuple[Block, ...]:
    """An optional `# title`, then `config.blocks` blocks, each after a `## section` heading with
    probability `config.section_prob`; block kinds drawn by the config's weights."""
    blocks: list[Block] = []
    if config.title:
        blocks.append(Heading(1, _title_case(_words(rng, rng.randint(2, 6)))))
    weights = config.weights()
    kinds, kind_weights = list(weights), list(weights.values())
    for _ in range(config.blocks):
        if rng.random() < config.section_prob:
            blocks.append(Heading(2, _sentence_case(_words(rng, rng.randint(1, 4)))))
        kind = rng.choices(kinds, kind_weights)[0]
        blocks.append(MAKERS[kind](config, rng))
    return tuple(blocks)


def math_expression(rng: random.Random) -> str:
    """A short expression written as plain text (`x^2 + 3x = 10`, `3/4`, `2^5 = 32`); the
    arithmetic ones are true, so a model is never taught a wrong sum."""
    v = rng.choice(VARIABLES)
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(2, 99)
    forms = (
        f"{v}^2 + {a}{v} = {c}",
        f"{a}/{b}",
        f"y = {a}{v} + {b}",
        f"{a} + {c} = {a + c}",
        f"{a}/{b} + {c}/{b} = {a + c}/{b}",
        f"{a}^{b % 3 + 2} = {a ** (b % 3 + 2)}",
        f"{c + a} - {a} = {c}",
        f"f({v}) = {v}^2 - {a}",
    )
    return rng.choice(forms)


def paragraph(config: SynthConfig, rng: random.Random) -> Paragraph:
    count = rng.randint(*config.paragraph_sentences)
    return Paragraph(" ".join(_sentence(config, rng) for _ in range(count)))


def _sentence(config: SynthConfig, rng: random.Random) -> str:
    """A sentence of vocabulary words (a few numbers among them), or with probability
    `config.math_prob` a short lead-in and an inline math expression."""
    if rng.random() < config.math_prob:
        return f"{rng.choice(MATH_LEADS)} {math_expression(rng)}."
    count = rng.randint(*config.sentence_words)
    return _sentence_case(_words(rng, count, NUMBER_PROB)) + "."


def _list(config: SynthConfig, rng: random.Random, ordered: bool) -> ListBlock:
    count = rng.randint(*config.list_items)
    items = tuple(_sentence_case(_words(rng, rng.randint(2, 8), NUMBER_PROB)) for _ in range(count))
    return ListBlock(items, ordered)


def _table(config: SynthConfig, rng: random.Random) -> Table:
    cols, rows = rng.randint(*config.table_cols), rng.randint(*config.table_rows)
    header = tuple(word(rng).capitalize() for _ in range(cols))
    body = tuple(
        (word(rng).capitalize(), *(_cell(rng) for _ in range(cols - 1))) for _ in range(rows)
    )
    return Table(header, body)


def _cell(rng: random.Random) -> str:
    return number(rng) if rng.random() < TABLE_NUMBER_PROB else word(rng)


def _columns(config: SynthConfig, rng: random.Random) -> Columns:
    left = tuple(paragraph(config, rng) for _ in range(rng.randint(*config.column_paragraphs)))
    right = tuple(paragraph(config, rng) for _ in range(rng.randint(*config.column_paragraphs)))
    return Columns(left, right)


MAKERS: dict[str, Callable[[SynthConfig, random.Random], Block]] = {
    "paragraph": paragraph,
    "bullets": lambda config, rng: _list(config, rng, ordered=False),
    "numbered": lambda config, rng: _list(config, rng, ordered=True),
    "table": _table,
    "equation": lambda config, rng: Equation(math_expression(rng)),
    "columns": _columns,
}


def _words(rng: random.Random, count: int, number_prob: float = 0.0) -> list[str]:
    """`count` words; after the first, each is a number with probability `number_prob`."""
    out = [word(rng)]
    for _ in range(count - 1):
        out.append(number(rng) if rng.random() < number_prob else word(rng))
    return out


def _sentence_case(words: list[str]) -> str:
    return " ".join([words[0].capitalize(), *words[1:]])


def _title_case(words: list[str]) -> str:
    return " ".join(w.capitalize() for w in words)
