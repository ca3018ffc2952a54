"""The side-by-side block of a quantized run: which score is the FP, the PTQ and the run's own
student in each kind of run, and the recovered fraction against a hand computation."""

from __future__ import annotations

import pytest

from forge.eval.quantized_comparison import comparison, greater_is_better, recovered_fraction


def test_recovered_fraction_by_hand_in_either_direction():
    # perplexity: FP 10, PTQ 14, QAD 11 -> (14 - 11) / (14 - 10) = 0.75
    assert recovered_fraction(14.0, 11.0, 10.0) == pytest.approx(0.75)
    # chrF: FP 40, PTQ 30, QAD 38 -> (30 - 38) / (30 - 40) = 0.8
    assert recovered_fraction(30.0, 38.0, 40.0) == pytest.approx(0.8)
    assert recovered_fraction(14.0, 15.0, 10.0) == pytest.approx(-0.25)  # worse than PTQ
    assert recovered_fraction(10.0, 9.0, 10.0) is None  # PTQ lost nothing: no fraction
    assert recovered_fraction(None, 9.0, 10.0) is None


def test_a_qat_run_compares_its_float_student_its_untrained_rounding_and_itself():
    pre = {"student": {"v/ppl": 14.0, "v/chrf": 30.0}, "student_float": {"v/ppl": 10.0, "v/chrf": 40.0},
           "teacher": {"v/ppl": 10.0, "v/chrf": 40.0}}
    post = {"student": {"v/ppl": 11.0, "v/chrf": 38.0, "v/perplexity_tokens": 99.0}}
    block = comparison(pre, post, trains=True, quantizes_in_training=True)
    assert block["fp_student"] == pre["student_float"] and block["ptq_student"] == pre["student"]
    assert block["fp_teacher"] == pre["teacher"] and block["student"] == post["student"]
    assert block["recovered_fraction"]  # the token count is not a score == pytest.approx({"v/ppl": 0.75, "v/chrf": 0.8})


def test_ptq_and_float_then_round_runs_have_no_recovered_fraction():
    pre, post = {"student": {"v/ppl": 10.0}}, {"student": {"v/ppl": 14.0}}
    ptq = comparison(pre, post, trains=False, quantizes_in_training=False)
    assert ptq["fp_student"] == pre["student"] and ptq["ptq_student"] == post["student"] and ptq["student"] is None
    assert "recovered_fraction" not in ptq
    rounded_at_the_end = comparison(pre, post, trains=True, quantizes_in_training=False)
    assert rounded_at_the_end["ptq_student"] is None and "recovered_fraction" not in rounded_at_the_end


def test_metric_directions():
    assert not greater_is_better("validation/perplexity") and not greater_is_better("eval/loss")
    assert greater_is_better("validation/chrf") and greater_is_better("validation/bleu")
