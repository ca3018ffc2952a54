"""forge.workbench.disagreement on a hand-made case of 8 examples worked out by hand, and per-sentence
chrF against sacrebleu's own."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from forge.workbench.disagreement import (
    Row,
    bin_rows,
    disagreement_table,
    sentence_chrf,
    translation_disagreement,
)

NAMES = ("neg", "pos", "neutral")
#            idx:   0     1     2     3     4     5     6     7
GOLD =            [0,    1,    1,    2,    0,    2,    1,    0]
TEACHER =         [0,    1,    0,    2,    1,    1,    1,    0]
STUDENT =         [0,    0,    0,    1,    1,    2,    1,    2]
CONFIDENCE =      [0.95, 0.92, 0.55, 0.75, 0.45, 0.60, 0.85, 0.98]
LENGTHS =         [5,    12,   8,    20,   3,    15,   9,    30]
TEXTS = [f"text {i}" for i in range(8)]
# Student ≠ teacher at 1, 3, 5, 7: 4 of 8.
# By gold:   neg {0, 4, 7} -> 1 (7);  pos {1, 2, 6} -> 1 (1);  neutral {3, 5} -> 2.
# By teacher confidence, bins [0, .5) [.5, .7) [.7, .9) [.9, 1]:
#            {4} -> 0;  {2, 5} -> 1 (5);  {3, 6} -> 1 (3);  {0, 1, 7} -> 2 (1, 7).
# By length, quartiles of 3 5 8 9 12 15 20 30 (linear interpolation): 3, 7.25, 10.5, 16.25, 30:
#            {4, 0} -> 0;  {2, 6} -> 0;  {1, 5} -> 2;  {3, 7} -> 2.
# Teacher right (teacher = gold) at 0, 1, 3, 6, 7 -> 3 disagreements (1, 3, 7); wrong at 2, 4, 5 -> 1 (5).
# Confusion, rows teacher, columns student:  teacher neg: student neg {0, 2}, neutral {7};
#   teacher pos: neg {1}, pos {4, 6}, neutral {5};  teacher neutral: pos {3}.


def table(**kwargs):
    return disagreement_table(STUDENT, TEACHER, GOLD, CONFIDENCE, LENGTHS, label_names=NAMES, **kwargs)


def test_overall_and_per_gold_label_counts():
    result = table()
    assert (result.count, result.disagreements, result.rate) == (8, 4, 0.5)
    assert result.by_gold == (Row("neg", 3, 1, 1 / 3), Row("pos", 3, 1, 1 / 3), Row("neutral", 2, 2, 1.0))


def test_breakdowns_by_confidence_length_and_teacher_correctness():
    result = table()
    assert result.by_teacher_confidence == (Row("[0, 0.5)", 1, 0, 0.0), Row("[0.5, 0.7)", 2, 1, 0.5),
                                            Row("[0.7, 0.9)", 2, 1, 0.5), Row("[0.9, 1]", 3, 2, 2 / 3))
    assert result.by_length == (Row("[3, 7.25)", 2, 0, 0.0), Row("[7.25, 10.5)", 2, 0, 0.0),
                                Row("[10.5, 16.25)", 2, 2, 1.0), Row("[16.25, 30]", 2, 2, 1.0))
    assert result.by_teacher_correct == (Row("teacher wrong", 3, 1, 1 / 3), Row("teacher right", 5, 3, 0.6))


def test_explicit_bins_keep_empty_rows():
    result = table(confidence_bins=(0.0, 0.3, 0.5, 1.0), length_bins=(0, 10, 40))
    assert result.by_teacher_confidence[0] == Row("[0, 0.3)", 0, 0, None)
    assert [(r.count, r.disagreements) for r in result.by_teacher_confidence] == [(0, 0), (1, 0), (7, 4)]
    # lengths < 10: {0, 2, 4, 6} -> 0;  10..40: {1, 3, 5, 7} -> 4
    assert result.by_length == (Row("[0, 10)", 4, 0, 0.0), Row("[10, 40]", 4, 4, 1.0))
    with pytest.raises(ValueError, match="outside the bins"):
        table(length_bins=(5, 40))


def test_confusion_matrix_is_teacher_by_student():
    np.testing.assert_array_equal(table().confusion, [[2, 0, 1],
                                                      [1, 2, 1],
                                                      [0, 1, 0]])


def test_top_k_lists_the_most_confident_disagreements_first():
    result = table()
    top = result.top_k(3, TEXTS)
    assert [d.index for d in top] == [7, 1, 3]  # teacher confidence 0.98, 0.92, 0.75 (then 5: 0.60)
    assert (top[0].text, top[0].gold, top[0].teacher, top[0].student) == ("text 7", "neg", "neg", "neutral")
    assert top[0].teacher_confidence == 0.98
    assert [d.index for d in result.top_k(10)] == [7, 1, 3, 5] and result.top_k(1)[0].text is None
    # ranked by another score (say the student's confidence): 5 first, ties by index
    student_conf = [0.9, 0.7, 0.9, 0.7, 0.9, 0.99, 0.9, 0.6]
    assert [d.index for d in result.top_k(3, score=student_conf)] == [5, 1, 3]
    with pytest.raises(ValueError, match="one entry per example"):
        result.top_k(2, TEXTS[:3])


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="outside 0..2"):
        disagreement_table([3] * 8, TEACHER, GOLD, CONFIDENCE, LENGTHS, label_names=NAMES)
    with pytest.raises(ValueError, match="one entry per example"):
        disagreement_table(STUDENT[:7], TEACHER, GOLD, CONFIDENCE, LENGTHS, label_names=NAMES)


def test_equal_lengths_make_one_length_bin():
    labels, index = bin_rows(np.array([4.0, 4.0]), [4.0, 5.0])
    assert labels == ["[4, 5]"] and index.tolist() == [0, 0]
    result = disagreement_table([0, 1], [0, 0], [0, 0], [0.9, 0.8], [4, 4], label_names=("a", "b"))
    assert result.by_length == (Row("[4, 5]", 2, 1, 0.5),)


HYPS = ["the cat sat on the mat", "a dog", "completely different", "", "Das ist gut."]
REFS = ["the cat sat on the mat", "the dog barked", "xyz", "something", "Das ist sehr gut."]


def test_sentence_chrf_is_sacrebleus():
    scores = sentence_chrf(HYPS, REFS)
    expected = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(HYPS, REFS)]
    np.testing.assert_allclose(scores, expected)
    assert scores[0] == 100.0 and scores[3] == 0.0 and 0 < scores[1] < scores[4] < 100
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        sentence_chrf(HYPS, REFS[:2])


def test_worst_translations_come_lowest_chrf_first():
    sources = [f"src {i}" for i in range(5)]
    result = translation_disagreement(HYPS, REFS, sources)
    scores = sentence_chrf(HYPS, REFS)
    assert result.mean == pytest.approx(scores.mean())
    worst = result.worst(3)
    # chrF here: 100, 17.9, 5.4, 0, 44.7 -> the empty output first, then "completely different"
    assert [w.index for w in worst] == [3, 2, 1]
    assert worst[0].chrf == min(scores) and [w.chrf for w in worst] == sorted(w.chrf for w in worst)
    assert (worst[0].student, worst[0].teacher, worst[0].source) == (HYPS[worst[0].index], REFS[worst[0].index],
                                                                      sources[worst[0].index])
