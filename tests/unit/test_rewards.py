"""GRPO reward objects: each value against its reference implementation or a hand computation,
the output validation that keeps a broken reward from reaching TRL, the teacher reward through the
real in-process backend (dense and top-k), and every conf/reward YAML building."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rapidfuzz.distance import Levenshtein

from forge.rewards.base import Reward, RewardContext, RewardError
from forge.rewards.shape import Format, LengthPenalty, repeated_fraction
from forge.rewards.teacher import TeacherLogprob
from forge.rewards.text import BLEU, ChrF, EditSimilarity, ExactMatch
from forge.teachers.backends.hf import HFTeacherBackend

ROOT = Path(__file__).resolve().parents[2]
EUROPARL = Path("/work/shared/data/europarl/europarl_v7_fr-en_heldout2k.tsv.gz")
VOCAB, PAD, EOS = 48, 0, 2
# what TRL passes besides the columns a reward reads; every reward must ignore them
TRL_EXTRAS = {"trainer_state": object(), "log_extra": lambda *a, **k: None, "source": None}


def french_references() -> list[str]:
    """A few real French sentences (Europarl when shared/ has it)."""
    if EUROPARL.exists():
        with gzip.open(EUROPARL, "rt", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f.readlines()[1:40]]
        refs = [fr for _, fr in rows if len(fr.split()) >= 6]
        if len(refs) >= 4:
            return refs[:4]
    return ["Le procès-verbal de la séance d'hier a été distribué.",
            "Monsieur le Président, je voudrais faire une observation concernant le procès-verbal.",
            "La Commission a présenté sa proposition au Parlement la semaine dernière.",
            "Nous devons examiner ce rapport avec le plus grand soin avant le vote."]


def hypotheses_for(refs: list[str]) -> list[str]:
    """Imperfect outputs: a dropped word, swapped words, a truncation, an unrelated sentence."""
    dropped = refs[0].split()
    del dropped[1]
    swapped = refs[1].split()
    swapped[0], swapped[2] = swapped[2], swapped[0]
    return [" ".join(dropped), " ".join(swapped), refs[2][: len(refs[2]) // 2], "Il fait beau aujourd'hui."]


def extras(n: int, refs: list[str]) -> dict:
    return {"reference": refs, "prompts": [[1, 5]] * n, "completion_ids": [[5, EOS]] * n, **TRL_EXTRAS}


# --- text rewards -------------------------------------------------------------------------------

def test_bleu_and_chrf_are_sacrebleu_sentence_scores_over_100():
    refs = french_references()
    hyps = hypotheses_for(refs)
    bleu = BLEU()(hyps, **extras(len(hyps), refs))
    chrf = ChrF()(hyps, **extras(len(hyps), refs))
    assert bleu == pytest.approx([sacrebleu.sentence_bleu(h, [r]).score / 100 for h, r in zip(hyps, refs)])
    assert chrf == pytest.approx([sacrebleu.sentence_chrf(h, [r]).score / 100 for h, r in zip(hyps, refs)])
    assert all(0.0 <= v < 1.0 for v in bleu + chrf)
    assert bleu[3] < bleu[0] and chrf[3] < chrf[0]  # an unrelated sentence scores below a near miss


def test_identical_text_scores_one_after_stripping():
    refs = french_references()[:2]
    hyps = [f"  {refs[0]}\n", refs[1]]
    for reward in (BLEU(), ChrF(), EditSimilarity(), ExactMatch()):
        assert reward(hyps, **extras(2, refs)) == pytest.approx([1.0, 1.0]), reward.name


def test_edit_similarity_is_rapidfuzz_normalised_similarity():
    refs = french_references()
    hyps = hypotheses_for(refs)
    got = EditSimilarity()(hyps, **extras(len(hyps), refs))
    assert got == pytest.approx([Levenshtein.normalized_similarity(h, r) for h, r in zip(hyps, refs)])
    # kitten -> sitting: 3 edits, longer string 7 characters
    assert EditSimilarity()(["kitten"], reference=["sitting"]) == pytest.approx([1 - 3 / 7])


def test_exact_match_collapses_whitespace_and_optionally_case():
    refs = ["Le chat dort.", "Le chat dort.", "Le chat dort."]
    hyps = [" Le  chat\tdort.\n", "le chat dort.", "Le chien dort."]
    assert ExactMatch()(hyps, reference=refs) == [1.0, 0.0, 0.0]
    assert ExactMatch(ignore_case=True)(hyps, reference=refs) == [1.0, 1.0, 0.0]


def test_missing_reference_column_names_the_reward():
    with pytest.raises(RewardError, match="'bleu'.*'reference'"):
        BLEU()(["x"], prompts=[[1]])


# --- shape rewards ------------------------------------------------------------------------------

def test_length_penalty_hand_values():
    hyps = ["abcd", "abcdef", "ab", "", "abcdefghijkl", " abcde "]
    got = LengthPenalty()(hyps, reference=["abcd"] * len(hyps))
    assert got == pytest.approx([0.0, -0.5, -0.5, -1.0, -1.0, -0.25])
    tolerant = LengthPenalty(tolerance=0.25)(["abcde", "abcdef", "abcdefghijkl"], reference=["abcd"] * 3)
    assert tolerant == pytest.approx([0.0, -0.25, -1.0])
    assert LengthPenalty()(["", "ab"], reference=["", ""]) == pytest.approx([0.0, -1.0])


def test_repeated_fraction_hand_values():
    assert repeated_fraction("a b c a b c a b c", 3) == pytest.approx(1 - 3 / 7)
    assert repeated_fraction("le chat dort sur le tapis", 3) == 0.0
    assert repeated_fraction("trop court", 3) == 0.0


def test_format_scores_eos_and_loops():
    reward = Format()
    reward.bind(RewardContext(tokenizer=None, eos_token_ids=[EOS, 7], pad_token_id=PAD))
    loop = "le chat le chat le chat le chat le chat"
    completions = ["le chat dort", "le chat dort", loop, loop, "le chat dort"]
    ids = [[5, 6, EOS], [5, 6, 9], [5, 6, EOS], [5, 6, 5], [5, 6, 7]]
    logged = {}
    got = reward(completions, completion_ids=ids, log_metric=logged.__setitem__, **TRL_EXTRAS)
    assert got == [1.0, 0.5, 0.5, 0.0, 1.0]
    assert logged == {"format/ended_with_eos": pytest.approx(3 / 5), "format/no_loop": pytest.approx(3 / 5)}


def test_format_needs_binding_and_eos_ids():
    with pytest.raises(RewardError, match="'format'.*bound"):
        Format()(["x"], completion_ids=[[EOS]])
    with pytest.raises(RewardError, match="'format'.*EOS"):
        Format().bind(RewardContext(tokenizer=None, eos_token_ids=[], pad_token_id=PAD))


def test_check_range_checks_numeric_options():
    assert LengthPenalty().check() == [] and Format().check() == [] and ExactMatch().check() == []
    [problem] = LengthPenalty(tolerance=1.5).check()
    assert problem.key == "reward.length_penalty.tolerance" and problem.value == 1.5 and problem.fix
    keys = {p.key for p in Format(ngram=0, max_repeat_fraction=-0.1).check()}
    assert keys == {"reward.format.ngram", "reward.format.max_repeat_fraction"}
    assert [p.key for p in Format(ngram=2.5).check()] == ["reward.format.ngram"]
    assert [p.key for p in ExactMatch(ignore_case="yes").check()] == ["reward.exact_match.ignore_case"]


def test_describe_records_name_class_and_params():
    assert LengthPenalty(name="len", tolerance=0.1).describe() == {
        "name": "len", "class": "forge.rewards.shape.LengthPenalty", "params": {"tolerance": 0.1}}
    assert BLEU().__name__ == "bleu"


# --- validation of what a reward returns --------------------------------------------------------

class Returns(Reward):
    def __init__(self, values) -> None:
        super().__init__("broken")
        self.values = values

    def score(self, completions, **columns):
        return self.values


@pytest.mark.parametrize("values, message", [
    ([1.0, 2.0, 3.0], "returned 3 values for 4 completions"),
    ([0.0, 0.0, math.nan, 0.0], "returned NaN for completion 2"),
    ([0.0, math.inf, 0.0, 0.0], "returned inf for completion 1"),
    ([0.0, "abc", 0.0, 0.0], "returned 'abc' \\(str\\) for completion 1, not a number"),
    ([None, 0.0, 0.0, 0.0], "returned None \\(NoneType\\) for completion 0, not a number"),
    ([True, 0.0, 0.0, 0.0], "returned True \\(bool\\) for completion 0, not a number"),
    (None, "returned None \\(NoneType\\), not a list"),
])
def test_bad_values_raise_naming_the_reward(values, message):
    with pytest.raises(RewardError, match=f"reward 'broken' {message}"):
        Returns(values)(["a", "b", "c", "d"])


def test_numpy_numbers_are_accepted_as_floats():
    got = Returns([np.float32(0.5), np.int64(1), 2, np.float64(-0.25)])(["a", "b", "c", "d"])
    assert got == [0.5, 1.0, 2.0, -0.25] and all(type(v) is float for v in got)


# --- teacher_logprob through the real in-process backend ----------------------------------------

def tiny_llama(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, eos_token_id=EOS, bos_token_id=1)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def teacher():
    return tiny_llama(1)


@torch.no_grad()
def position_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """[len(completion), V] the model's own log-distribution of each completion token (no padding)."""
    logits = model(input_ids=torch.tensor([prompt + completion])).logits[0].float()
    start = len(prompt) - 1
    return torch.log_softmax(logits[start:start + len(completion)], dim=-1)


def dense_mean(model, prompt: list[int], completion: list[int]) -> float:
    logp = position_logprobs(model, prompt, completion)
    return logp.gather(-1, torch.tensor(completion).unsqueeze(-1)).mean().item()


def topk_mean(model, prompt: list[int], completion: list[int], k: int) -> tuple[float, int]:
    """Renormalised top-k log-prob of each token (the view's smallest when outside); and how many
    tokens were inside the view."""
    values, ids = position_logprobs(model, prompt, completion).topk(k, dim=-1)
    renormalised = values - values.logsumexp(-1, keepdim=True)
    per_token, inside = [], 0
    for j, token in enumerate(completion):
        hit = (ids[j] == token).nonzero()
        inside += len(hit)
        per_token.append(renormalised[j, hit[0, 0]].item() if len(hit) else renormalised[j].min().item())
    return sum(per_token) / len(per_token), inside


@torch.no_grad()
def greedy(model, prompt: list[int], n: int) -> list[int]:
    """n greedy tokens: every one is the teacher's top-1, so it is inside any top-k view."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(prompt):]


PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 10, 11]]
RANDOM_COMPLETION = [13, 14, 15, 16, EOS]


def bound(reward: Reward, backend, top_k=None) -> Reward:
    reward.bind(RewardContext(tokenizer=None, eos_token_ids=[EOS], pad_token_id=PAD, teacher=backend,
                              teacher_top_k=top_k))
    return reward


def test_teacher_logprob_dense_equals_the_models_own_forward(teacher):
    completions = [greedy(teacher, PROMPTS[0], 3), RANDOM_COMPLETION]
    reward = bound(TeacherLogprob(), HFTeacherBackend(teacher))
    logged = {}
    got = reward(["a", "b"], prompts=PROMPTS, completion_ids=completions, reference=["", ""],
                 log_metric=logged.__setitem__, **TRL_EXTRAS)
    expected = [dense_mean(teacher, p, c) for p, c in zip(PROMPTS, completions)]
    assert got == pytest.approx(expected, abs=1e-5)
    assert all(v < 0 for v in got)
    assert logged == {"teacher_logprob/outside_view": 0.0, "teacher_logprob/unscored": 0.0}


def test_teacher_logprob_top_k_is_the_renormalised_view(teacher):
    k = 3
    completions = [greedy(teacher, PROMPTS[0], 3), RANDOM_COMPLETION]
    reward = bound(TeacherLogprob(), HFTeacherBackend(teacher, top_k=k), top_k=k)
    logged = {}
    got = reward(["a", "b"], prompts=PROMPTS, completion_ids=completions, log_metric=logged.__setitem__)
    hand = [topk_mean(teacher, p, c, k) for p, c in zip(PROMPTS, completions)]
    assert got == pytest.approx([mean for mean, _ in hand], abs=1e-5)
    inside = sum(n for _, n in hand)
    assert hand[0][1] == 3  # the greedy row is wholly inside the view: its value is exact there
    assert inside < 8  # and the random row has tokens outside, scored by the view's floor
    assert logged["teacher_logprob/outside_view"] == pytest.approx((8 - inside) / 8)


def test_teacher_logprob_prefers_teacher_prompt_and_scores_empty_as_zero(teacher):
    reward = bound(TeacherLogprob(), HFTeacherBackend(teacher))
    teacher_prompts = [[1, 20, 21, 22], [1, 23]]
    got = reward(["a", ""], prompts=PROMPTS, teacher_prompt=teacher_prompts, completion_ids=[RANDOM_COMPLETION, []])
    assert got == pytest.approx([dense_mean(teacher, teacher_prompts[0], RANDOM_COMPLETION), 0.0], abs=1e-5)
    assert reward(["", ""], prompts=PROMPTS, completion_ids=[[], []]) == [0.0, 0.0]


def test_teacher_logprob_unbound_says_the_mode_must_bind_a_teacher():
    args = {"prompts": [[1, 5]], "completion_ids": [[6, EOS]]}
    with pytest.raises(RewardError, match="'teacher_logprob'.*must bind a teacher"):
        TeacherLogprob()(["x"], **args)
    with pytest.raises(RewardError, match="'teacher_logprob'.*must bind a teacher"):
        bound(TeacherLogprob(), None)(["x"], **args)
    assert TeacherLogprob.needs_teacher and not BLEU.needs_teacher


def test_teacher_logprob_refuses_text_prompts(teacher):
    reward = bound(TeacherLogprob(), HFTeacherBackend(teacher))
    with pytest.raises(RewardError, match="'prompts' row 0.*token ids"):
        reward(["x"], prompts=["Translate: chat"], completion_ids=[[6, EOS]])


# --- conf/reward ----------------------------------------------------------------------------------

REWARD_YAMLS = sorted((ROOT / "conf" / "reward").glob("*.yaml"))


def test_reward_folder_holds_every_option():
    assert {p.stem for p in REWARD_YAMLS} >= {"bleu", "chrf", "edit_similarity", "exact_match",
                                               "length_penalty", "format", "teacher_logprob"}


@pytest.mark.parametrize("path", REWARD_YAMLS, ids=lambda p: p.stem)
def test_every_reward_yaml_instantiates(path):
    text = path.read_text()
    assert text.startswith(f"# @package reward.{path.stem}\n")
    reward = instantiate(OmegaConf.load(path))
    assert isinstance(reward, Reward) and reward.name == path.stem == reward.__name__
    assert reward.check() == []


def test_several_rewards_compose_under_reward_in_order():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base=None, config_dir=str(ROOT / "conf")):
        cfg = compose(config_name=None, overrides=["+reward=[bleu,length_penalty]"])
    assert list(cfg.reward) == ["bleu", "length_penalty"]
    assert cfg.reward.length_penalty.tolerance == 0.0
    assert [instantiate(c).name for c in cfg.reward.values()] == ["bleu", "length_penalty"]
