"""Centred kernel alignment (CKA) between teacher and student layers, and the pooling that turns
hidden states into the feature matrices CKA compares.

Hand-written on purpose: no well-kept library ships minibatch debiased CKA (torch-cka is stale since
2021 and has no unbiased estimator; ckatorch is single-author; scikit-learn has none), and the
formulas are short enough to test directly against the papers (tests/unit/test_workbench_cka.py).

- `linear_cka`: biased linear CKA (Kornblith et al. 2019), ||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F)
  with column-centred X and Y. Biased: for n not much larger than the width, two *independent* random
  representations already score well above 0, because the diagonal of each Gram matrix aligns.
- `MinibatchCKA` / `debiased_cka`: CKA from the unbiased HSIC estimator of Song et al. 2012, averaged
  over minibatches as in Nguyen, Raghu & Kornblith 2021 ("Do wide and deep networks learn the same
  things?"). The estimator zeroes the Gram diagonals, so independent features score ≈ 0 at any n, and
  averaging per-minibatch HSICs keeps memory at one minibatch whatever the number of examples.

Nothing here builds an n×n Gram matrix it does not need: every term of HSIC is computed from the
feature matrices (tr(KL) = ||Xᵀ Y||²_F, K1 = X(Xᵀ1)), falling back to the b×b Gram product only when it
is the cheaper of the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

POOLINGS: tuple[str, ...] = ("cls", "mean", "last", "tokens")


def as_matrix(features: Any) -> np.ndarray:
    """float64 (n, d) view of a feature array or tensor; trailing axes are flattened into d."""
    if isinstance(features, torch.Tensor):
        features = features.detach().to(device="cpu", dtype=torch.float64).numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError("features must have an example axis, got a scalar")
    return array.reshape(len(array), -1)


def _trace_kl(x: np.ndarray, y: np.ndarray) -> float:
    """tr(K L) for K = x xᵀ, L = y yᵀ, i.e. ||xᵀ y||²_F, by whichever product is cheaper."""
    n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
    if n * n * (dx + dy) < n * dx * dy:
        return float(np.sum((x @ x.T) * (y @ y.T)))
    return float(np.sum(np.square(x.T @ y)))


def _ratio(cross: float, self_x: float, self_y: float) -> float:
    """cross / sqrt(self_x · self_y); NaN where a self term is not positive (a constant layer, or a
    debiased estimate driven to ≤ 0 by a tiny sample)."""
    if self_x <= 0 or self_y <= 0:
        return float("nan")
    return float(cross / np.sqrt(self_x * self_y))


def linear_cka(x: Any, y: Any) -> float:
    """Biased linear CKA of x (n×d1) and y (n×d2): ||Ycᵀ Xc||²_F / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F).

    Invariant to orthogonal transforms and isotropic scaling of either side, not to arbitrary
    invertible linear maps (that is what makes it informative for wide layers). NaN if either side is
    constant over the examples.
    """
    xc, yc = as_matrix(x), as_matrix(y)
    if len(xc) != len(yc):
        raise ValueError(f"x and y need the same examples: {len(xc)} rows vs {len(yc)}")
    xc = xc - xc.mean(axis=0)
    yc = yc - yc.mean(axis=0)
    return _ratio(_trace_kl(xc, yc), _trace_kl(xc, xc), _trace_kl(yc, yc))


@dataclass(frozen=True)
class _GramStats:
    """What HSIC needs from one layer's minibatch, in place of its b×b Gram matrix K = x xᵀ.

    Biased: `features` are column-centred (HSIC = tr(K H L H) / (b−1)² = ||Ycᵀ Xc||² / (b−1)²).
    Debiased: raw features, the diagonal K_ii, the row sums of K̃ (K with its diagonal zeroed) and
    their total 1ᵀK̃1.
    """

    features: np.ndarray
    diag: Optional[np.ndarray] = None
    row_sums: Optional[np.ndarray] = None
    total: float = 0.0


def _gram_stats(x: np.ndarray, debiased: bool) -> _GramStats:
    if not debiased:
        return _GramStats(x - x.mean(axis=0))
    diag = np.einsum("ij,ij->i", x, x)
    row_sums = x @ x.sum(axis=0) - diag
    return _GramStats(x, diag, row_sums, float(row_sums.sum()))


def _hsic(a: _GramStats, b: _GramStats) -> float:
    """HSIC of two layers' stats over the same minibatch of n examples.

    Debiased (Song et al. 2012, eq. 5), K̃ and L̃ being K and L with zeroed diagonals:
        [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))
    with tr(K̃L̃) = tr(KL) − Σ K_ii L_ii and 1ᵀK̃L̃1 = (K̃1)·(L̃1).
    """
    n = a.features.shape[0]
    if a.diag is None:
        return _trace_kl(a.features, b.features) / (n - 1) ** 2
    trace = _trace_kl(a.features, b.features) - float(a.diag @ b.diag)
    sums = a.total * b.total / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * float(a.row_sums @ b.row_sums)
    return (trace + sums - cross) / (n * (n - 3))


def _min_batch(debiased: bool) -> int:
    # the unbiased estimator divides by n(n−3) and (n−2); the biased one by (n−1)
    return 4 if debiased else 2


class MinibatchCKA:
    """CKA accumulated over minibatches (Nguyen, Raghu & Kornblith 2021).

    Each `update` adds one minibatch's HSIC(K, L), HSIC(K, K) and HSIC(L, L) (unbiased when
    `debiased`, else the biased tr(KHLH)/(b−1)²); `value()` is mean HSIC_KL / sqrt(mean HSIC_KK ·
    mean HSIC_LL). Minibatches weigh the same whatever their size, as in the paper. With one minibatch
    of all n examples and debiased=False this is exactly `linear_cka`.
    """

    def __init__(self, *, debiased: bool = True) -> None:
        self.debiased = debiased
        self._sums = np.zeros(3)
        self._batches = 0

    @property
    def batches(self) -> int:
        return self._batches

    def update(self, x_batch: Any, y_batch: Any) -> None:
        x, y = as_matrix(x_batch), as_matrix(y_batch)
        if len(x) != len(y):
            raise ValueError(f"minibatch rows differ: x {len(x)}, y {len(y)}")
        if len(x) < _min_batch(self.debiased):
            raise ValueError(f"a minibatch needs at least {_min_batch(self.debiased)} examples "
                             f"(debiased={self.debiased}), got {len(x)}")
        sx, sy = _gram_stats(x, self.debiased), _gram_stats(y, self.debiased)
        self._sums += (_hsic(sx, sy), _hsic(sx, sx), _hsic(sy, sy))
        self._batches += 1

    def value(self) -> float:
        if self._batches == 0:
            raise ValueError("MinibatchCKA.value() before any update()")
        cross, self_x, self_y = self._sums / self._batches
        return _ratio(cross, self_x, self_y)


def batch_slices(n: int, batch_size: Optional[int], min_size: int) -> list[slice]:
    """Consecutive minibatches of `batch_size` rows (one of all n when None). A remainder shorter
    than `min_size` (too small for the estimator) joins the batch before it."""
    if n < min_size:
        raise ValueError(f"CKA needs at least {min_size} examples, got {n}")
    if batch_size is None or batch_size >= n:
        return [slice(0, n)]
    if batch_size < min_size:
        raise ValueError(f"batch_size must be at least {min_size}, got {batch_size}")
    starts = list(range(0, n, batch_size))
    if n - starts[-1] < min_size:
        starts.pop()
    return [slice(s, e) for s, e in zip(starts, starts[1:] + [n])]


def debiased_cka(x: Any, y: Any, batch_size: Optional[int] = None) -> float:
    """Minibatch debiased CKA of x and y (rows are examples; consecutive rows form a minibatch, so
    shuffle first if the rows are ordered by something the features encode)."""
    xm, ym = as_matrix(x), as_matrix(y)
    if len(xm) != len(ym):
        raise ValueError(f"x and y need the same examples: {len(xm)} rows vs {len(ym)}")
    acc = MinibatchCKA(debiased=True)
    for rows in batch_slices(len(xm), batch_size, _min_batch(True)):
        acc.update(xm[rows], ym[rows])
    return acc.value()


def cka_matrix(teacher_layers: Sequence[Any], student_layers: Sequence[Any], *, debiased: bool,
               batch_size: Optional[int] = None) -> np.ndarray:
    """CKA of every (teacher layer, student layer) pair: rows teacher layers, columns student layers.

    Each layer's per-minibatch statistics are computed once and shared by all pairs it is in. Row /
    column indices are positions in the lists passed, so pass all hidden states (0 = embeddings)
    when the indices should be Forge's layer-map indices.
    """
    teachers = [as_matrix(t) for t in teacher_layers]
    students = [as_matrix(s) for s in student_layers]
    if not teachers or not students:
        raise ValueError("cka_matrix needs at least one teacher and one student layer")
    rows = {len(a) for a in teachers + students}
    if len(rows) != 1:
        raise ValueError(f"all layers need the same examples; row counts seen: {sorted(rows)}")
    cross = np.zeros((len(teachers), len(students)))
    self_t, self_s = np.zeros(len(teachers)), np.zeros(len(students))
    for part in batch_slices(rows.pop(), batch_size, _min_batch(debiased)):
        st = [_gram_stats(t[part], debiased) for t in teachers]
        ss = [_gram_stats(s[part], debiased) for s in students]
        self_t += [_hsic(a, a) for a in st]
        self_s += [_hsic(b, b) for b in ss]
        cross += [[_hsic(a, b) for b in ss] for a in st]
    return np.array([[_ratio(cross[i, j], self_t[i], self_s[j]) for j in range(len(students))]
                     for i in range(len(teachers))])


def best_teacher_layer(matrix: np.ndarray, student_layer: int) -> int:
    """The teacher layer (row) most similar to `student_layer` (column); NaNs are ignored."""
    column = np.asarray(matrix, dtype=float)[:, student_layer]
    if np.all(np.isnan(column)):
        raise ValueError(f"student layer {student_layer} has no finite CKA with any teacher layer")
    return int(np.nanargmax(column))


@dataclass(frozen=True)
class MappedLayer:
    """One pair of a distillation layer map, next to the teacher layer CKA would have chosen."""

    student_layer: int
    teacher_layer: int
    cka: float
    best_teacher_layer: int
    best_cka: float
    is_best: bool


def layer_map_report(matrix: np.ndarray, layer_map: Mapping[int, int]) -> list[MappedLayer]:
    """For each {student_layer: teacher_layer} pair of a layer map (indices into `matrix`'s columns /
    rows): its CKA, the best teacher layer for that student layer, and whether the map chose it."""
    matrix = np.asarray(matrix, dtype=float)
    report = []
    for student, teacher in sorted(layer_map.items()):
        best = best_teacher_layer(matrix, student)
        report.append(MappedLayer(student, teacher, float(matrix[teacher, student]), best,
                                  float(matrix[best, student]), best == teacher))
    return report


def _last_real_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token: seq−1 minus the first 1 of the reversed mask, which is
    right for right padding, left padding, or none."""
    return mask.shape[1] - 1 - torch.argmax(mask.flip(1).to(torch.int64), dim=1)


def pooled_features(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> np.ndarray:
    """Feature matrix of hidden states (batch, seq, dim) at real tokens only (attention_mask == 1).

    cls: the first real token (position 0 with right padding; a left-padded row's first real one);
    mean: the mean over real tokens; last: the last real token (a decoder's summary token, for right
    or left padding); tokens: every real token's vector, rows in (example, position) order, so the
    result has sum(mask) rows rather than batch rows. Padding never enters a feature: its hidden
    states are whatever the model wrote there and would make CKA compare padding patterns.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid choices: {', '.join(POOLINGS)}")
    if hidden.ndim != 3 or tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(f"hidden must be (batch, seq, dim) and attention_mask (batch, seq); got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}")
    states = hidden.detach().to(device="cpu", dtype=torch.float32)
    mask = attention_mask.detach().to("cpu") == 1
    if pooling == "tokens":
        return states[mask].numpy()
    real = mask.sum(dim=1)
    if bool((real == 0).any()):
        raise ValueError(f"rows {torch.nonzero(real == 0).flatten().tolist()} have no real token")
    rows = torch.arange(states.shape[0])
    if pooling == "mean":
        pooled = (states * mask.unsqueeze(-1)).sum(dim=1) / real.unsqueeze(-1)
    elif pooling == "cls":
        pooled = states[rows, torch.argmax(mask.to(torch.int64), dim=1)]
    else:
        pooled = states[rows, _last_real_positions(mask)]
    return pooled.numpy()
