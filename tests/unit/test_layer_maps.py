"""Layer maps: the pairs of each strategy for several depth pairs, and the problems of bad maps."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from forge.config.errors import ConfigError
from forge.losses.layer_map import LayerMapSpec, LayerMapStrategy, layer_pairs, validate_layer_map


@pytest.mark.parametrize(
    "ls, lt, expected",
    [
        (3, 6, [(1, 2), (2, 4), (3, 6)]),
        (6, 6, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]),
        (2, 12, [(1, 6), (2, 12)]),
        (4, 6, [(1, 2), (2, 3), (3, 5), (4, 6)]),  # 1.5 -> 2 and 4.5 -> 5: half rounds up
        (6, 3, [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)]),
        # i / 6 for i = 1..12: 0.17 and 0.33 round to 0 (clamped to 1), 1.5 (i = 9) rounds up.
        (12, 2, [(i, 1) for i in range(1, 9)] + [(i, 2) for i in range(9, 13)]),
    ],
)
def test_uniform(ls: int, lt: int, expected: list[tuple[int, int]]) -> None:
    pairs = layer_pairs({"strategy": "uniform"}, ls, lt)
    assert pairs == expected
    assert all(t >= 1 for _, t in pairs)  # never the embeddings, so attention can use it too


def test_uniform_small_ratio_never_maps_to_embeddings() -> None:
    pairs = layer_pairs(None, 12, 2)
    assert pairs[0] == (1, 1)  # 1 * 2 / 12 rounds to 0, clamped to block 1
    assert pairs[-1] == (12, 2)


@pytest.mark.parametrize(
    "ls, lt, n, expected",
    [
        (3, 6, 1, [(3, 6)]),
        (3, 6, 2, [(2, 5), (3, 6)]),
        (6, 6, 3, [(4, 4), (5, 5), (6, 6)]),
        (2, 12, 2, [(1, 11), (2, 12)]),
    ],
)
def test_last_n(ls: int, lt: int, n: int, expected: list[tuple[int, int]]) -> None:
    assert layer_pairs({"strategy": "last_n", "n": n}, ls, lt) == expected


@pytest.mark.parametrize("n", [0, 3, 7])
def test_last_n_out_of_range(n: int) -> None:
    problems = validate_layer_map({"strategy": "last_n", "n": n}, 2, 12)
    assert len(problems) == 1
    assert problems[0].key == "loss.layer_map.n"
    assert problems[0].value == n
    assert "2" in problems[0].message and "1..2" in problems[0].fix


@pytest.mark.parametrize(
    "ls, lt, expected",
    [(3, 6, [(1, 1), (3, 6)]), (6, 6, [(1, 1), (6, 6)]),
     (2, 12, [(1, 1), (2, 12)]), (1, 1, [(1, 1)])],
)
def test_first_last(ls: int, lt: int, expected: list[tuple[int, int]]) -> None:
    assert layer_pairs({"strategy": "first_last"}, ls, lt) == expected


def test_custom_pairs_kept_in_order() -> None:
    spec = {"strategy": "custom", "pairs": [[0, 0], [3, 6], [1, 2]]}
    assert layer_pairs(spec, 3, 6) == [(0, 0), (3, 6), (1, 2)]


def test_custom_out_of_range_names_pair_and_range() -> None:
    spec = {"strategy": "custom", "pairs": [[1, 2], [4, 6], [3, 7]]}
    problems = validate_layer_map(spec, 3, 6, key="loss.feature.layer_map")
    assert [p.value for p in problems] == [[4, 6], [3, 7]]
    for p in problems:
        assert p.key == "loss.feature.layer_map.pairs"
        assert "student 0..3" in p.message and "teacher 0..6" in p.message
    assert "[4, 6]" in problems[0].message
    with pytest.raises(ConfigError, match=r"\[3, 7\]"):
        layer_pairs(spec, 3, 6)


def test_custom_zero_is_invalid_for_attention() -> None:
    spec = {"strategy": "custom", "pairs": [[0, 1], [3, 6]]}
    assert validate_layer_map(spec, 3, 6) == []  # embeddings are a valid hidden state
    problems = validate_layer_map(spec, 3, 6, first_index=1)
    assert len(problems) == 1 and problems[0].value == [0, 1]
    assert "student 1..3" in problems[0].message


def test_custom_without_pairs_and_pairs_without_custom() -> None:
    (p,) = validate_layer_map({"strategy": "custom"}, 3, 6)
    assert p.key == "loss.layer_map.pairs" and "at least one" in p.message
    (p,) = validate_layer_map({"strategy": "uniform", "pairs": [[1, 2]]}, 3, 6)
    assert "strategy=custom" in p.fix


def test_coerce_accepts_dictconfig_enum_and_rejects_unknown() -> None:
    cfg = OmegaConf.create({"strategy": "last_n", "n": 2, "pairs": None})
    assert LayerMapSpec.coerce(cfg) == LayerMapSpec(LayerMapStrategy.last_n, 2, None)
    assert LayerMapSpec.coerce(LayerMapStrategy.first_last).strategy is LayerMapStrategy.first_last
    assert LayerMapSpec.coerce(None).strategy is LayerMapStrategy.uniform
    with pytest.raises(ValueError, match="uniform, last_n, first_last, custom"):
        LayerMapSpec.coerce({"strategy": "every_other"})
    with pytest.raises(ValueError, match="unknown keys"):
        LayerMapSpec.coerce({"strategy": "uniform", "nn": 2})
