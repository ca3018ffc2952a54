"""Held-out perplexity for language-model tasks: the running text is the held-out side joined in
order (BOS first, cut to max_tokens); a text inside one window scores exp(the model's own mean
token loss); bad settings are config problems; the translation task reports it on its eval set."""

from __future__ import annotations

import math

import pytest
import torch

from forge.config.errors import ConfigError
from forge.eval.heldout_text import HeldoutPerplexity
from tests.conftest import SHARED_DATA, compose_config
from tests.unit.test_quantization import tiny_llama


class CharTokenizer:
    """One id per character (ids 1..), BOS 0: token counts are known by hand."""

    bos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [1 + (ord(c) % 60) for c in text]}


def test_the_running_text_is_the_lines_joined_in_order_after_a_bos_and_cut():
    tok = CharTokenizer()
    spec = HeldoutPerplexity(max_tokens=5)
    assert spec.token_stream(["ab", "c"], tok) == [0, *tok("ab\nc")["input_ids"]][:5]
    assert len(HeldoutPerplexity(max_tokens=None).token_stream(["ab", "c"], tok)) == 5


def test_a_text_inside_one_window_scores_exp_of_the_models_mean_token_loss():
    model = tiny_llama()
    tok = CharTokenizer()
    texts = ["le chat", "dort"]
    ids = HeldoutPerplexity().token_stream(texts, tok)
    with torch.no_grad():
        reference = math.exp(float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss))
    got = HeldoutPerplexity(window=64, stride=32).score(model, texts, tok)
    assert got["perplexity"] == pytest.approx(reference, rel=1e-5)
    assert got["perplexity_tokens"] == len(ids) - 1  # the BOS has no context: never scored


@pytest.mark.parametrize("override,needle", [("task.perplexity.side=german", "source, target"),
                                             ("task.perplexity.stride=600", "between 1 and window (512)")])
def test_bad_settings_are_config_problems(override, needle):
    from forge.plan import build_plan

    with pytest.raises(ConfigError) as err:
        build_plan(compose_config(["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}",
                                   "model=smollm2", "logger=none", "task.perplexity.enabled=true", override]))
    assert "task.perplexity" in str(err.value) and needle in str(err.value)


def test_the_translation_task_reports_it_on_the_held_out_text():
    import hydra.utils

    from forge.models.loading import load_tokenizer

    cfg = compose_config(["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2",
                          "task.perplexity.enabled=true", "task.perplexity.max_tokens=40",
                          "task.perplexity.window=16", "task.perplexity.stride=8", "task.max_train_samples=4",
                          "task.max_eval_samples=2"])
    handler = hydra.utils.instantiate(cfg.task, _convert_="all")
    tokenizer = load_tokenizer(cfg.model.student)
    handler.prepare(tokenizer)
    model = tiny_llama()
    model.resize_token_embeddings(len(tokenizer))
    got = handler.model_metrics(model, "validation")
    heldout = handler.load_splits()["validation"].targets
    want = HeldoutPerplexity(window=16, stride=8, max_tokens=40).score(model, heldout, tokenizer)
    assert got == want and got["perplexity_tokens"] == 39 and got["perplexity"] > 1
    assert handler.model_metrics(model, "train") == {}
