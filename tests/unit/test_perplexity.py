"""Sliding-window perplexity against a brute-force computation on a tiny real causal LM: for every
scored token, one forward pass over exactly the context its window gives it."""

from __future__ import annotations

import math

import pytest
import torch

from forge.eval.perplexity import Perplexity, corpus_perplexity, sliding_window_nll, window_starts


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def brute_force(model, ids: list[int], window: int, stride: int) -> Perplexity:
    """Each token p scored from ids[begin:p], begin the start of the first window holding p with context."""
    nll, count = 0.0, 0
    for p in range(1, len(ids)):
        begin = 0
        while not (begin < p < begin + window):
            begin += stride
            if begin >= p:
                break
        if not begin < p < begin + window:
            continue  # no window gives it context (stride == window: a window's first token)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids[begin:p]])).logits[0, -1]
        nll -= float(torch.log_softmax(logits, -1)[ids[p]])
        count += 1
    return Perplexity(nll, count)


def test_windows_cover_every_token_once():
    assert window_starts(10, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert window_starts(10, 4, 4) == [(0, 4, 1), (4, 8, 5), (8, 10, 9)]  # no overlap: 4 and 8 unscored
    assert window_starts(5, 4, 4) == [(0, 4, 1)]  # the last token would be a window's first: unscored
    with pytest.raises(ValueError, match="stride"):
        window_starts(10, 4, 5)


@pytest.mark.parametrize("window,stride", [(40, 40), (8, 3), (8, 8), (6, 1), (5, 4)])
def test_sliding_window_equals_one_forward_per_token(tiny_lm, window, stride):
    ids = [int(i) for i in torch.randint(0, 50, (23,), generator=torch.Generator().manual_seed(1))]
    got, expected = sliding_window_nll(tiny_lm, ids, window=window, stride=stride), brute_force(tiny_lm, ids, window, stride)
    assert got.tokens == expected.tokens
    assert got.nll == pytest.approx(expected.nll, rel=1e-5)
    if window >= len(ids):  # one window: the plain causal-LM loss of the whole text
        with torch.no_grad():
            loss = tiny_lm(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
        assert got.tokens == len(ids) - 1 and got.value == pytest.approx(math.exp(float(loss)), rel=1e-5)


def test_a_corpus_pools_tokens_not_text_perplexities(tiny_lm):
    a, b = [1, 2, 3, 4, 5, 6], [7, 8, 9]
    pa, pb = sliding_window_nll(tiny_lm, a, window=4, stride=2), sliding_window_nll(tiny_lm, b, window=4, stride=2)
    total = corpus_perplexity(tiny_lm, [a, b], window=4, stride=2)
    assert total.tokens == 5 + 2 and total.nll == pytest.approx(pa.nll + pb.nll)
    assert total.value == pytest.approx(math.exp((pa.nll + pb.nll) / 7))
