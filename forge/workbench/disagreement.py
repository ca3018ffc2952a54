"""Where a student and its teacher disagree, and on what kind of input.

An overall agreement rate says how much of the teacher was transferred, not where the transfer
failed. The table breaks disagreements down by gold label, by teacher confidence (a student that
disagrees with a confident teacher missed something the teacher knew; with an unsure one, little is
lost), by input length, and by whether the teacher itself was right (disagreeing with a wrong teacher
can be a gain). For translation, disagreement is graded: per-sentence chrF of student output against
teacher output (sacrebleu's, the reference implementation) and the worst sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from sacrebleu import sentence_chrf as _sacrebleu_chrf
from sklearn.metrics import confusion_matrix

DEFAULT_CONFIDENCE_BINS: tuple[float, ...] = (0.5, 0.7, 0.9, 1.0)
DEFAULT_LENGTH_QUANTILES = 4


@dataclass(frozen=True)
class Row:
    """One group of a breakdown; rate is None for an empty group (kept so every table has the same
    rows)."""

    key: str
    count: int
    disagreements: int
    rate: Optional[float]


@dataclass(frozen=True)
class Disagreement:
    """One disagreement, labels by name."""

    index: int
    text: Optional[str]
    gold: str
    teacher: str
    student: str
    teacher_confidence: float


def _rows(keys: Sequence[str], group: np.ndarray, differs: np.ndarray) -> tuple[Row, ...]:
    """Count and disagreements of each group (group[i] indexes keys) in keys' order."""
    rows = []
    for g, key in enumerate(keys):
        members = group == g
        count, hits = int(members.sum()), int(differs[members].sum())
        rows.append(Row(key, count, hits, hits / count if count else None))
    return tuple(rows)


def _fmt(edge: float) -> str:
    return str(int(edge)) if float(edge).is_integer() else f"{edge:g}"


def bin_rows(values: np.ndarray, edges: Sequence[float]) -> tuple[list[str], np.ndarray]:
    """Labels "[a, b)" (the last bin closed, "[a, b]") and each value's bin index for sorted edges."""
    edges = np.asarray(edges, dtype=float)
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bin edges must be at least two increasing numbers, got {edges.tolist()}")
    if values.size and (values.min() < edges[0] or values.max() > edges[-1]):
        raise ValueError(f"values span [{values.min():g}, {values.max():g}], outside the bins "
                         f"[{edges[0]:g}, {edges[-1]:g}]")
    index = np.minimum(np.searchsorted(edges, values, side="right") - 1, len(edges) - 2)
    labels = [f"[{_fmt(a)}, {_fmt(b)})" for a, b in zip(edges[:-1], edges[1:])]
    labels[-1] = labels[-1][:-1] + "]"
    return labels, index


def _length_edges(lengths: np.ndarray, length_bins: Union[int, Sequence[float], None]) -> np.ndarray:
    """Explicit edges, or quantile edges (`length_bins` of them, 4 by default) with ties merged."""
    if length_bins is not None and not isinstance(length_bins, int):
        return np.asarray(length_bins, dtype=float)
    quantiles = np.linspace(0.0, 1.0, (length_bins or DEFAULT_LENGTH_QUANTILES) + 1)
    edges = np.unique(np.quantile(lengths, quantiles))
    return edges if len(edges) > 1 else np.array([edges[0], edges[0] + 1.0])


@dataclass(frozen=True)
class DisagreementTable:
    """Student-vs-teacher disagreement overall and broken down; `confusion[t, s]` counts examples the
    teacher labelled t and the student s."""

    label_names: tuple[str, ...]
    count: int
    disagreements: int
    rate: float
    by_gold: tuple[Row, ...]
    by_teacher_confidence: tuple[Row, ...]
    by_length: tuple[Row, ...]
    by_teacher_correct: tuple[Row, ...]
    confusion: np.ndarray
    _student: np.ndarray = field(repr=False)
    _teacher: np.ndarray = field(repr=False)
    _gold: np.ndarray = field(repr=False)
    _confidence: np.ndarray = field(repr=False)

    def top_k(self, k: int, texts: Optional[Sequence[str]] = None,
              score: Optional[Sequence[float]] = None) -> list[Disagreement]:
        """The k disagreements with the highest `score` (the teacher's confidence unless given, e.g.
        the student's), highest first, ties by index: the cases most worth reading."""
        ranking = self._confidence if score is None else np.asarray(score, dtype=float)
        if len(ranking) != self.count or (texts is not None and len(texts) != self.count):
            raise ValueError(f"texts and score need one entry per example ({self.count})")
        wrong = np.flatnonzero(self._student != self._teacher)
        order = wrong[np.argsort(-ranking[wrong], kind="stable")][:k]
        names = self.label_names
        return [Disagreement(int(i), None if texts is None else texts[i], names[self._gold[i]],
                             names[self._teacher[i]], names[self._student[i]], float(self._confidence[i]))
                for i in order]


def _labels(values: Sequence[int], name: str, num_labels: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_labels):
        raise ValueError(f"{name} holds labels outside 0..{num_labels - 1}")
    return array


def disagreement_table(student_pred: Sequence[int], teacher_pred: Sequence[int], gold: Sequence[int],
                       teacher_confidence: Sequence[float], lengths: Sequence[float], *,
                       label_names: Sequence[str],
                       confidence_bins: Sequence[float] = DEFAULT_CONFIDENCE_BINS,
                       length_bins: Union[int, Sequence[float], None] = None) -> DisagreementTable:
    """Disagreement of student and teacher predictions (label indices into `label_names`).

    Confidence bins are [0, e0), [e0, e1), ..., [e_{k−1}, e_k] for the edges given (a first bin from 0
    is added so a many-class teacher's confidence below e0 is counted). Length bins are `length_bins`
    quantile bins (4 when None; tied quantiles merge) or explicit edges.
    """
    names, k = tuple(label_names), len(label_names)
    student, teacher = _labels(student_pred, "student_pred", k), _labels(teacher_pred, "teacher_pred", k)
    gold_arr = _labels(gold, "gold", k)
    confidence = np.asarray(teacher_confidence, dtype=float)
    length = np.asarray(lengths, dtype=float)
    if len({len(student), len(teacher), len(gold_arr), len(confidence), len(length)}) != 1:
        raise ValueError("student_pred, teacher_pred, gold, teacher_confidence and lengths need one "
                         "entry per example")
    if len(student) == 0:
        raise ValueError("disagreement_table needs at least one example")
    differs = student != teacher
    edges = list(confidence_bins) if confidence_bins[0] <= 0 else [0.0, *confidence_bins]
    conf_keys, conf_group = bin_rows(confidence, edges)
    len_keys, len_group = bin_rows(length, _length_edges(length, length_bins))
    teacher_right = (teacher == gold_arr).astype(np.int64)
    return DisagreementTable(
        label_names=names, count=len(student), disagreements=int(differs.sum()),
        rate=float(differs.mean()), by_gold=_rows(names, gold_arr, differs),
        by_teacher_confidence=_rows(conf_keys, conf_group, differs),
        by_length=_rows(len_keys, len_group, differs),
        by_teacher_correct=_rows(["teacher wrong", "teacher right"], teacher_right, differs),
        confusion=confusion_matrix(teacher, student, labels=list(range(k))),
        _student=student, _teacher=teacher, _gold=gold_arr, _confidence=confidence)


def sentence_chrf(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sentence chrF (sacrebleu's defaults: chrF2, char order 6) of each hypothesis against its
    one reference; for student-vs-teacher, the student's output is the hypothesis."""
    if len(hyps) != len(refs):
        raise ValueError(f"one reference per hypothesis: {len(hyps)} hypotheses, {len(refs)} references")
    return np.array([_sacrebleu_chrf(h, [r]).score for h, r in zip(hyps, refs)], dtype=float)


@dataclass(frozen=True)
class TranslationPair:
    """One student output next to the teacher's, with its chrF against it."""

    index: int
    chrf: float
    student: str
    teacher: str
    source: Optional[str]


@dataclass(frozen=True)
class TranslationDisagreement:
    """Per-sentence chrF of student outputs against teacher outputs."""

    scores: np.ndarray
    student: tuple[str, ...]
    teacher: tuple[str, ...]
    sources: Optional[tuple[str, ...]] = None

    @property
    def mean(self) -> float:
        return float(self.scores.mean()) if self.scores.size else float("nan")

    def worst(self, k: int) -> list[TranslationPair]:
        """The k sentences where the student strays furthest from the teacher, lowest chrF first
        (ties by index)."""
        order = np.argsort(self.scores, kind="stable")[:k]
        return [TranslationPair(int(i), float(self.scores[i]), self.student[i], self.teacher[i],
                                None if self.sources is None else self.sources[i]) for i in order]


def translation_disagreement(student_outputs: Sequence[str], teacher_outputs: Sequence[str],
                             sources: Optional[Sequence[str]] = None) -> TranslationDisagreement:
    """chrF of each student output against the teacher's output for the same source."""
    if sources is not None and len(sources) != len(student_outputs):
        raise ValueError(f"one source per output: {len(sources)} sources, {len(student_outputs)} outputs")
    return TranslationDisagreement(sentence_chrf(student_outputs, teacher_outputs), tuple(student_outputs),
                                   tuple(teacher_outputs), None if sources is None else tuple(sources))
