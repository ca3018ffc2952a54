"""Generate Forge's packaged `demo` data set: binary sentiment of short English reviews.

Written for this project from the hand-made phrase lists below (no existing corpus is copied).
Restaurants, films and products; label 1 = positive, 0 = negative. Besides plain sentences
("The soup was lovely.") it mixes in the cases that make sentiment non-trivial for a small model:
negation ("not great", "not bad at all", "anything but friendly"), contrast where the clause after
"but" / the main clause decides ("The plot was dull, but the acting was superb."), double negatives
("I can't say I was disappointed"), and expectation reversals ("I expected to hate it, but ...").

Deterministic: one seeded `random.Random` (stable across Python versions), lists only (never
iteration over a set), fixed "\\n" line endings. The committed train.tsv / dev.tsv are exactly
this script's output; `--check` verifies that, and tests do too.

    python forge/data/demo/make_demo_data.py            # rewrite the TSVs next to this script
    python forge/data/demo/make_demo_data.py --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SEED = 20240611
TRAIN_PER_LABEL = 400
DEV_PER_LABEL = 100

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Domain:
    """One kind of thing being reviewed, with its own vocabulary."""

    nouns: tuple[str, ...]
    aspects: tuple[str, ...]
    pos_adjs: tuple[str, ...]
    neg_adjs: tuple[str, ...]
    #: mild negatives that flip to praise when negated ("not bland at all")
    mild_negs: tuple[str, ...]
    again_pos: tuple[str, ...]
    again_neg: tuple[str, ...]


RESTAURANT = Domain(
    nouns=("restaurant", "bistro", "diner", "cafe", "pizzeria", "noodle bar", "steakhouse",
           "bakery", "taco stand", "sushi place", "tea room", "burger joint"),
    aspects=("food", "soup", "pasta", "dessert", "coffee", "curry", "bread", "salad", "lasagna",
             "breakfast", "seafood", "pizza", "risotto", "dumplings", "omelette", "brunch"),
    pos_adjs=("delicious", "tasty", "flavorful", "fresh", "perfectly cooked", "generous",
              "perfectly seasoned", "mouthwatering", "hearty"),
    neg_adjs=("bland", "greasy", "stale", "undercooked", "lukewarm", "tasteless", "dry",
              "overpriced", "soggy", "burnt"),
    mild_negs=("bland", "greasy", "overpriced", "salty", "dry", "bad", "disappointing"),
    again_pos=("I will definitely be back", "we are already planning our next visit",
               "I would eat here every week"),
    again_neg=("I will not be going back", "we left hungry and annoyed",
               "I would not eat here again"),
)

FILM = Domain(
    nouns=("film", "movie", "thriller", "comedy", "documentary", "sequel", "drama", "cartoon",
           "horror flick", "musical", "western", "mini-series"),
    aspects=("plot", "acting", "soundtrack", "ending", "dialogue", "cast", "pacing", "script",
             "camera work", "lead actor", "story", "humor", "villain", "final act"),
    pos_adjs=("gripping", "moving", "hilarious", "clever", "beautifully shot", "gorgeous",
              "thrilling", "heartfelt", "witty"),
    neg_adjs=("boring", "predictable", "tedious", "clumsy", "confusing", "wooden", "painfully slow",
              "forgettable", "cheesy", "pointless"),
    mild_negs=("boring", "predictable", "slow", "confusing", "bad", "disappointing"),
    again_pos=("I would happily watch it again", "I have already recommended it to my friends",
               "it stayed with me for days"),
    again_neg=("I walked out halfway through", "I want those two hours back",
               "I nearly fell asleep"),
)

PRODUCT = Domain(
    nouns=("phone", "laptop", "blender", "vacuum cleaner", "backpack", "kettle", "keyboard",
           "tent", "camera", "coffee maker", "desk lamp", "toaster", "pair of headphones",
           "electric toothbrush"),
    aspects=("battery", "screen", "build quality", "charger", "manual", "design", "sound",
             "zipper", "handle", "motor", "lid", "cable", "case", "strap", "power switch"),
    pos_adjs=("sturdy", "reliable", "sleek", "durable", "intuitive", "well made", "quiet",
              "handy", "good value"),
    neg_adjs=("flimsy", "unreliable", "clunky", "fragile", "overpriced", "cheap-feeling",
              "noisy", "useless", "defective", "awkward"),
    mild_negs=("flimsy", "noisy", "complicated", "expensive", "bad", "disappointing"),
    again_pos=("I would buy it again in a heartbeat", "it was worth every penny",
               "I bought a second one for my sister"),
    again_neg=("I returned it the next day", "it broke within a week",
               "I regret buying it"),
)

DOMAINS = (RESTAURANT, FILM, PRODUCT)

POS_ADJS = ("excellent", "wonderful", "fantastic", "superb", "great", "lovely", "impressive",
            "outstanding", "delightful", "terrific", "brilliant", "pleasant", "first-rate",
            "charming", "top-notch", "remarkable", "marvelous", "splendid", "fabulous", "solid")
NEG_ADJS = ("awful", "terrible", "disappointing", "dreadful", "poor", "mediocre", "horrible",
            "lousy", "dismal", "sloppy", "unpleasant", "frustrating", "appalling", "shoddy",
            "underwhelming", "subpar", "annoying", "atrocious", "miserable", "a letdown")
INTENSIFIERS = ("", "", "", "really ", "very ", "truly ", "quite ", "absolutely ", "rather ",
                "pretty ", "genuinely ", "surprisingly ", "incredibly ")
OPENERS = ("", "", "", "", "Honestly, ", "Overall, ", "In short, ", "All in all, ", "Frankly, ",
           "To be fair, ", "For what it's worth, ", "I have to say ")
COPULAS = ("was", "was", "is")
WHOM = ("anyone", "my friends", "a first-timer", "my family", "my colleagues", "everyone")


def pick(rng: random.Random, options: tuple[str, ...] | list[str]) -> str:
    return options[rng.randrange(len(options))]


def pos_adj(rng: random.Random, domain: Domain) -> str:
    return pick(rng, domain.pos_adjs) if rng.random() < 0.4 else pick(rng, POS_ADJS)


def neg_adj(rng: random.Random, domain: Domain) -> str:
    return pick(rng, domain.neg_adjs) if rng.random() < 0.4 else pick(rng, NEG_ADJS)


def adj(rng: random.Random, domain: Domain, label: int) -> str:
    return pos_adj(rng, domain) if label else neg_adj(rng, domain)


def two_aspects(rng: random.Random, domain: Domain) -> tuple[str, str]:
    first = pick(rng, domain.aspects)
    second = pick(rng, [a for a in domain.aspects if a != first])
    return first, second


def the_thing(rng: random.Random, domain: Domain) -> str:
    """'the soup' or 'this bistro'."""
    if rng.random() < 0.5:
        return "the " + pick(rng, domain.aspects)
    return "this " + pick(rng, domain.nouns)


# ---- templates: each returns a sentence whose sentiment is `label` ----------------------------


def t_plain(rng: random.Random, d: Domain, label: int) -> str:
    return f"{pick(rng, OPENERS)}{the_thing(rng, d)} {pick(rng, COPULAS)} {pick(rng, INTENSIFIERS)}{adj(rng, d, label)}."


def t_exclaim(rng: random.Random, d: Domain, label: int) -> str:
    word = adj(rng, d, label)
    if " " in word or word.startswith("a "):
        return f"{the_thing(rng, d)} was {word}!"
    article = "an" if word[0] in "aeio" or word.startswith("un") else "a"
    return f"what {article} {word} {pick(rng, d.nouns)}!"


def t_negated(rng: random.Random, d: Domain, label: int) -> str:
    """'not great' is negative, 'not bland at all' positive, 'anything but friendly' negative."""
    thing = the_thing(rng, d)
    if label:
        tail = pick(rng, ("at all", "in the slightest", "one bit", "as some reviews claim"))
        return f"{pick(rng, OPENERS)}{thing} was not {pick(rng, d.mild_negs)} {tail}."
    if rng.random() < 0.3:
        return f"{thing} was anything but {pos_adj(rng, d)}."
    adverb = pick(rng, ("", "", "exactly ", "particularly ", "very ", "that "))
    return f"{pick(rng, OPENERS)}{thing} was not {adverb}{pos_adj(rng, d)}."


def t_but(rng: random.Random, d: Domain, label: int) -> str:
    """Mixed aspects; the clause after 'but' carries the verdict."""
    first, second = two_aspects(rng, d)
    return (f"the {first} was {adj(rng, d, 1 - label)}, but the {second} was "
            f"{pick(rng, INTENSIFIERS)}{adj(rng, d, label)}.")


def t_although(rng: random.Random, d: Domain, label: int) -> str:
    """The subordinate clause concedes; the main clause decides."""
    first, second = two_aspects(rng, d)
    lead = pick(rng, ("although", "even though", "while"))
    return f"{lead} the {first} was {adj(rng, d, 1 - label)}, the {second} was {adj(rng, d, label)}."


def t_despite(rng: random.Random, d: Domain, label: int) -> str:
    aspect = pick(rng, d.aspects)
    verdict = pick(rng, d.again_pos if label else d.again_neg)
    return f"despite the {adj(rng, d, 1 - label)} {aspect}, {verdict}."


def t_expectation(rng: random.Random, d: Domain, label: int) -> str:
    noun = pick(rng, d.nouns)
    if label:
        setup = pick(rng, ("I expected to hate this", "I had low expectations for this",
                           "my friends warned me about this", "I almost skipped this"))
        return f"{setup} {noun}, but it turned out {pos_adj(rng, d)}."
    setup = pick(rng, ("I really wanted to love this", "I had high hopes for this",
                       "everyone raved about this", "I waited months for this"))
    return f"{setup} {noun}, but it was {neg_adj(rng, d)}."


def t_recommend(rng: random.Random, d: Domain, label: int) -> str:
    noun = pick(rng, d.nouns)
    whom = pick(rng, WHOM)
    if label:
        how = pick(rng, ("would happily recommend", "would recommend", "would gladly recommend",
                         "have already recommended"))
    else:
        how = pick(rng, ("would not recommend", "could never recommend", "wouldn't recommend",
                         "can't recommend"))
    return f"{pick(rng, OPENERS)}I {how} this {noun} to {whom}."


def t_double_negative(rng: random.Random, d: Domain, label: int) -> str:
    aspect = pick(rng, d.aspects)
    if label:
        return pick(rng, (f"I can't say I was disappointed by the {aspect}.",
                          f"there was nothing wrong with the {aspect}.",
                          f"I have no complaints about the {aspect}.",
                          f"I never once regretted choosing this {pick(rng, d.nouns)}."))
    return pick(rng, (f"I can't say I enjoyed the {aspect}.",
                      f"there was nothing {pos_adj(rng, d)} about the {aspect}.",
                      f"I have nothing good to say about the {aspect}.",
                      f"I never once enjoyed this {pick(rng, d.nouns)}."))


def t_comparison(rng: random.Random, d: Domain, label: int) -> str:
    aspect = pick(rng, d.aspects)
    degree = pick(rng, ("far ", "much ", "a lot ", "", "way "))
    word = "better" if label else "worse"
    target = pick(rng, ("than I expected", "than the reviews suggested", "than last time",
                        "than at most places like it", "than I had feared" if label else "than I had hoped"))
    return f"the {aspect} was {degree}{word} {target}."


def t_pair(rng: random.Random, d: Domain, label: int) -> str:
    first, second = two_aspects(rng, d)
    if rng.random() < 0.5:
        return f"both the {first} and the {second} were {adj(rng, d, label)}."
    if label:
        return f"neither the {first} nor the {second} disappointed."
    return f"neither the {first} nor the {second} was any good."


def t_verdict(rng: random.Random, d: Domain, label: int) -> str:
    """A plain description followed by the verdict sentence that decides."""
    return f"{pick(rng, OPENERS)}{pick(rng, d.again_pos if label else d.again_neg)}."


TEMPLATES: tuple[tuple[Callable[[random.Random, Domain, int], str], int], ...] = (
    (t_plain, 6),
    (t_exclaim, 1),
    (t_negated, 4),
    (t_but, 3),
    (t_although, 2),
    (t_despite, 2),
    (t_expectation, 2),
    (t_recommend, 2),
    (t_double_negative, 2),
    (t_comparison, 2),
    (t_pair, 2),
    (t_verdict, 1),
)


def capitalise(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def generate(seed: int = SEED) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train_rows, dev_rows): balanced, unique sentences; no dev sentence occurs in train."""
    rng = random.Random(seed)
    templates = [t for t, weight in TEMPLATES for _ in range(weight)]
    per_label = TRAIN_PER_LABEL + DEV_PER_LABEL
    by_label: dict[int, list[str]] = {0: [], 1: []}
    seen: set[str] = set()  # membership only; order comes from the lists
    while min(len(v) for v in by_label.values()) < per_label:
        for label in (0, 1):
            if len(by_label[label]) >= per_label:
                continue
            sentence = capitalise(pick(rng, templates)(rng, pick(rng, DOMAINS), label))
            key = sentence.lower()
            if key not in seen:
                seen.add(key)
                by_label[label].append(sentence)
    train: list[tuple[str, int]] = []
    dev: list[tuple[str, int]] = []
    for label in (0, 1):
        sentences = by_label[label]
        rng.shuffle(sentences)
        dev += [(s, label) for s in sentences[:DEV_PER_LABEL]]
        train += [(s, label) for s in sentences[DEV_PER_LABEL:]]
    rng.shuffle(train)
    rng.shuffle(dev)
    return train, dev


def render_tsv(rows: list[tuple[str, int]]) -> str:
    for sentence, _ in rows:
        if "\t" in sentence or "\n" in sentence or '"' in sentence:
            raise ValueError(f"unsafe character in {sentence!r}")
    return "sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows)


def render_files(seed: int = SEED) -> dict[str, bytes]:
    train, dev = generate(seed)
    return {"train.tsv": render_tsv(train).encode("utf-8"), "dev.tsv": render_tsv(dev).encode("utf-8")}


def write_demo_data(out_dir: Path = HERE, seed: int = SEED) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in render_files(seed).items():
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        stale = [name for name, data in render_files().items()
                 if not (args.out_dir / name).is_file() or (args.out_dir / name).read_bytes() != data]
        if stale:
            print(f"out of date: {', '.join(stale)}; rerun without --check", file=sys.stderr)
            return 1
        print("demo data up to date")
        return 0
    for path in write_demo_data(args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
