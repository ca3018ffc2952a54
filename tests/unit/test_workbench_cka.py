"""forge.workbench.cka against the papers' formulas written out directly here (full n×n Gram matrices),
CKA's invariances, the bias of linear CKA on independent features, and pooling at real tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forge.workbench.cka import (
    MinibatchCKA,
    batch_slices,
    best_teacher_layer,
    cka_matrix,
    debiased_cka,
    layer_map_report,
    linear_cka,
    pooled_features,
)


def gram_hsic_biased(x: np.ndarray, y: np.ndarray) -> float:
    """tr(K H L H) / (n−1)², H = I − 11ᵀ/n (Gretton et al. 2005)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(x @ x.T @ h @ y @ y.T @ h)) / (n - 1) ** 2


def gram_hsic_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. 2012: [tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1/((n−1)(n−2)) − 2/(n−2) 1ᵀK̃L̃1] / (n(n−3))."""
    n = len(x)
    k, l = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    one = np.ones(n)
    value = (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
             - 2.0 / (n - 2) * (one @ k @ l @ one))
    return float(value / (n * (n - 3)))


def gram_cka(x: np.ndarray, y: np.ndarray, hsic) -> float:
    return hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y))


def minibatch_reference(x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Mean over equal consecutive batches of each HSIC, then the ratio (Nguyen et al. 2021)."""
    parts = [slice(s, s + batch) for s in range(0, len(x), batch)]
    kl = np.mean([gram_hsic_unbiased(x[p], y[p]) for p in parts])
    kk = np.mean([gram_hsic_unbiased(x[p], x[p]) for p in parts])
    ll = np.mean([gram_hsic_unbiased(y[p], y[p]) for p in parts])
    return float(kl / np.sqrt(kk * ll))


@pytest.fixture
def related() -> tuple[np.ndarray, np.ndarray]:
    """y is a noisy nonlinear function of x: CKA well between 0 and 1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 30))
    y = np.tanh(x @ rng.standard_normal((30, 20))) + 0.5 * rng.standard_normal((120, 20))
    return x, y


def test_cka_of_a_representation_with_itself_is_one(related):
    x, _ = related
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert debiased_cka(x, x, batch_size=40) == pytest.approx(1.0, abs=1e-12)


def test_biased_linear_cka_matches_the_gram_matrix_hsic(related):
    x, y = related
    expected = gram_cka(x, y, gram_hsic_biased)
    assert 0.1 < expected < 0.9
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-10)
    acc = MinibatchCKA(debiased=False)
    acc.update(x, y)
    assert acc.value() == pytest.approx(expected, abs=1e-10)
    # torch tensors are accepted as they are
    assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(y)) == pytest.approx(expected, abs=1e-5)


def test_full_batch_debiased_cka_matches_the_unbiased_hsic_formula(related):
    x, y = related
    expected = gram_cka(x, y, gram_hsic_unbiased)
    assert debiased_cka(x, y) == pytest.approx(expected, abs=1e-8)
    assert debiased_cka(x, y, batch_size=len(x)) == pytest.approx(expected, abs=1e-8)
    # 40 examples of width 240 take the b×b Gram route inside (cheaper than Xᵀ Y): the same number
    wide_x, wide_y = np.hstack([x[:40]] * 8), np.hstack([y[:40]] * 12)
    assert debiased_cka(wide_x, wide_y) == pytest.approx(gram_cka(wide_x, wide_y, gram_hsic_unbiased), abs=1e-8)
    assert linear_cka(wide_x, wide_y) == pytest.approx(gram_cka(wide_x, wide_y, gram_hsic_biased), abs=1e-10)


def test_minibatch_debiased_cka_is_the_mean_of_per_batch_hsics(related):
    x, y = related
    for batch in (30, 40, 60):
        assert debiased_cka(x, y, batch_size=batch) == pytest.approx(minibatch_reference(x, y, batch), abs=1e-8)
    acc = MinibatchCKA()
    for start in range(0, 120, 40):
        acc.update(x[start:start + 40], y[start:start + 40])
    assert acc.batches == 3 and acc.value() == pytest.approx(minibatch_reference(x, y, 40), abs=1e-8)
    assert debiased_cka(x, y, batch_size=30) != pytest.approx(debiased_cka(x, y), abs=1e-4)


def test_a_remainder_too_small_for_the_estimator_joins_the_previous_batch():
    assert batch_slices(10, 4, 4) == [slice(0, 4), slice(4, 10)]  # 2 left over: too few
    assert batch_slices(12, 4, 4) == [slice(0, 4), slice(4, 8), slice(8, 12)]
    assert batch_slices(13, 4, 2) == [slice(0, 4), slice(4, 8), slice(8, 13)]
    assert batch_slices(14, 4, 2) == [slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 14)]
    assert batch_slices(7, None, 4) == [slice(0, 7)]
    with pytest.raises(ValueError, match="at least 4"):
        batch_slices(3, None, 4)
    with pytest.raises(ValueError, match="batch_size must be at least 4"):
        batch_slices(10, 3, 4)
    with pytest.raises(ValueError, match="at least 4 examples"):
        MinibatchCKA().update(np.ones((3, 2)), np.ones((3, 2)))


def test_invariant_to_orthogonal_maps_and_isotropic_scaling_but_not_to_any_linear_map(related):
    x, y = related
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    moved = 3.7 * x @ q + 5.0  # orthogonal, scaled, shifted
    assert linear_cka(moved, y) == pytest.approx(linear_cka(x, y), abs=1e-10)
    assert debiased_cka(moved, y) == pytest.approx(debiased_cka(x, y), abs=1e-8)
    assert debiased_cka(moved, y, batch_size=40) == pytest.approx(debiased_cka(x, y, batch_size=40), abs=1e-8)
    # An invertible but ill-conditioned map (singular values 1 ... 1000) changes what CKA sees.
    skew = np.diag(np.logspace(0, 3, 30)) @ q
    assert linear_cka(x, x @ skew) < 0.7
    assert debiased_cka(x, x @ skew) < 0.7
    assert abs(linear_cka(x @ skew, y) - linear_cka(x, y)) > 0.05


def test_debiased_cka_of_independent_features_is_near_zero_where_biased_is_not():
    # n = 200 examples of width 500: the centred Gram matrices of two independent representations are
    # both close to a multiple of H, so biased CKA is ~0.7; the unbiased HSIC removes that diagonal.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 500)), rng.standard_normal((200, 500))
    assert linear_cka(x, y) > 0.5
    assert abs(debiased_cka(x, y)) < 0.05
    assert abs(debiased_cka(x, y, batch_size=100)) < 0.05


def test_cka_matrix_rows_are_teacher_layers_and_columns_student_layers(related):
    x, y = related
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((120, 10))
    teachers, students = [x, y, noise], [y[:, :5], x]
    biased = cka_matrix(teachers, students, debiased=False)
    assert biased.shape == (3, 2)
    for i, t in enumerate(teachers):
        for j, s in enumerate(students):
            assert biased[i, j] == pytest.approx(linear_cka(t, s), abs=1e-10)
            assert cka_matrix(teachers, students, debiased=True, batch_size=40)[i, j] == pytest.approx(
                minibatch_reference(t, s, 40), abs=1e-8)
    assert best_teacher_layer(biased, 1) == 0 and biased[0, 1] == pytest.approx(1.0)
    assert best_teacher_layer(biased, 0) == 1
    with pytest.raises(ValueError, match="same examples"):
        cka_matrix([x], [y[:100]], debiased=True)


def test_layer_map_report_says_whether_the_map_chose_the_best_teacher_layer():
    matrix = np.array([[0.2, 0.1],
                       [0.9, 0.3],
                       [0.4, 0.8]])
    first, second = layer_map_report(matrix, {1: 1, 0: 2})
    assert (first.student_layer, first.teacher_layer, first.cka) == (0, 2, 0.4)
    assert (first.best_teacher_layer, first.best_cka, first.is_best) == (1, 0.9, False)
    assert (second.student_layer, second.teacher_layer, second.cka, second.best_teacher_layer) == (1, 1, 0.3, 2)
    assert not second.is_best
    assert layer_map_report(matrix, {0: 1})[0].is_best


def padded_batch(left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences, lengths 3 and 2, seq 4, dim 2: token t of example b is [10b + t, −(10b + t)];
    padding positions hold 99 so any leak shows."""
    hidden = torch.full((2, 4, 2), 99.0)
    mask = torch.zeros(2, 4, dtype=torch.int64)
    for b, length in enumerate((3, 2)):
        positions = range(4 - length, 4) if left else range(length)
        for t, pos in enumerate(positions):
            hidden[b, pos] = torch.tensor([10.0 * b + t, -(10.0 * b + t)])
            mask[b, pos] = 1
    return hidden, mask


@pytest.mark.parametrize("left", [False, True])
def test_pooled_features_read_real_tokens_only(left):
    hidden, mask = padded_batch(left)
    np.testing.assert_array_equal(pooled_features(hidden, mask, "cls"), [[0, 0], [10, -10]])
    np.testing.assert_allclose(pooled_features(hidden, mask, "mean"), [[1, -1], [10.5, -10.5]])
    np.testing.assert_array_equal(pooled_features(hidden, mask, "last"), [[2, -2], [11, -11]])
    np.testing.assert_array_equal(pooled_features(hidden, mask, "tokens"),
                                  [[0, 0], [1, -1], [2, -2], [10, -10], [11, -11]])


def test_pooled_features_refuse_unknown_pooling_and_empty_rows():
    hidden, mask = padded_batch(False)
    with pytest.raises(ValueError, match="cls, mean, last, tokens"):
        pooled_features(hidden, mask, "max")
    mask[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        pooled_features(hidden, mask, "mean")
    assert pooled_features(hidden.to(torch.bfloat16), mask, "tokens").shape == (3, 2)
