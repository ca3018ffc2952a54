"""The teacher-signal cache's top-k store for decoders, on tiny real Llama teachers: the rows equal
the live backend's view within float16 rounding, the key changes with k / tokenizer / template, a
truncated file is detected and rebuilt, and the plan decides where the store may stand in."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from forge.data.causal_collate import CausalLMCollator
from forge.teachers.backends.hf import HFTeacherBackend
from forge.teachers.cache.teacher_pass import TeacherPass
from forge.teachers.cache.topk_session import TopKStoreSession, batch_view
from forge.teachers.cache.topk_store import (
    TopKSpec, decode_logprobs, encode_logprobs, id_dtype_for, renormalized_rows,
)
from tests.unit.test_gkd import EOS, PAD, VOCAB, tiny_llama

K = 8


def word_tokenizer(size: int = VOCAB):
    """A real fast tokenizer over `size` word tokens (w0 = pad, w2 = eos)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(size)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="w3")),
                                   pad_token="w0", eos_token="w2")


def examples(n: int = 10, seed: int = 0, template: int = 5) -> list[dict]:
    """Prompt → completion examples of different lengths; `template` is the prompt's first token."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        prompt = [template] + rng.integers(4, VOCAB, int(rng.integers(2, 7))).tolist()
        completion = rng.integers(4, VOCAB, int(rng.integers(1, 6))).tolist() + [EOS]
        rows.append({"prompt_input_ids": prompt, "completion_input_ids": completion})
    return rows


@pytest.fixture(scope="module")
def backend():
    return HFTeacherBackend(tiny_llama(1))


def session(tmp_path, backend, *, data=None, k=K, dtype="float16", tokenizer=None, tail=False) -> TopKStoreSession:
    source = TeacherPass(root=tmp_path, backend=backend, dataset=data or examples(), collator=CausalLMCollator(PAD),
                         tokenizer=tokenizer or word_tokenizer(), batch_size=4)
    return TopKStoreSession(source, TopKSpec(k, dtype, tail))


def test_ids_take_the_smallest_unsigned_type_that_holds_the_vocabulary():
    assert [id_dtype_for(v) for v in (256, 257, 49152, 65536, 65537)] == \
        [np.uint8, np.uint16, np.uint16, np.uint16, np.uint32]


@pytest.mark.parametrize("dtype, mantissa_bits", [("float16", 10), ("bfloat16", 7)])
def test_stored_log_probabilities_are_off_by_at_most_half_an_ulp(dtype, mantissa_bits):
    x = -torch.rand(10_000, dtype=torch.float64) * 30
    back = decode_logprobs(encode_logprobs(x.float(), dtype), dtype).double()
    assert encode_logprobs(x.float(), dtype).itemsize == 2
    assert bool(((back - x).abs() <= x.abs() * 2.0 ** -(mantissa_bits + 1) + 2.0 ** -25).all())


def test_renormalising_keeps_rows_nobody_described_as_padding():
    rows = torch.tensor([[-0.1, -2.5, -3.0], [float("-inf")] * 3])
    out = renormalized_rows(rows)
    assert torch.allclose(out[0].logsumexp(-1), torch.tensor(0.0), atol=1e-6)
    assert torch.isneginf(out[1]).all()


def test_stored_rows_equal_the_live_view_within_float16_rounding(tmp_path, backend):
    data = examples()
    stored = session(tmp_path, backend, data=data).open()
    collate = CausalLMCollator(PAD)
    index = torch.tensor([7, 0, 3])
    batch = collate([data[int(i)] for i in index])
    live = batch_view(backend, batch, K)
    mask = batch["completion_attention_mask"]
    view = stored.view(index, mask)
    counted = mask.bool()
    assert torch.equal(view.token_ids[counted], live.token_ids[counted])
    live_lp = live.logprobs[counted]
    # half an ulp of float16 per stored value; renormalising again moves a row by at most twice that
    bound = 2 * (live_lp.abs().max(-1, keepdim=True).values * 2.0 ** -11 + 2.0 ** -25)
    assert bool(((view.logprobs[counted] - live_lp).abs() <= bound).all())
    assert torch.isneginf(view.logprobs[~counted]).all() and view.temperature == 1.0
    # re-tempered on read: the same as the live view asked at T = 0.7
    tempered = batch_view_at(backend, batch, K, 0.7)
    assert torch.allclose(view.at_temperature(0.7).logprobs[counted], tempered[counted], atol=5e-3)


def batch_view_at(backend, batch, k, temperature):
    from forge.decoding.token_logprobs import completion_topk

    return completion_topk(backend, batch["prompt_input_ids"], batch["prompt_attention_mask"],
                           batch["completion_input_ids"], batch["completion_attention_mask"], k, temperature).logprobs


def test_the_store_reports_its_size_per_token_and_is_built_once(tmp_path, backend):
    first = session(tmp_path, backend)
    stored = first.open()
    report = first.report
    tokens = sum(len(e["completion_input_ids"]) for e in examples())
    assert report["tokens"] == stored.tokens == tokens and report["built"] == ["topk_ids", "topk_logprobs"]
    assert report["id_dtype"] == "uint8" and report["logprob_dtype"] == "float16"
    assert report["size_bytes"] == 2 * (tokens * K * 1 + 128) + tokens * K  # uint8 ids + fp16, .npy headers
    assert report["bytes_per_token"] == pytest.approx(report["size_bytes"] / tokens, abs=0.05)
    again = session(tmp_path, backend)
    again.open()
    assert again.report["reused"] == ["topk_ids", "topk_logprobs"] and again.report["built"] == []
    assert len(json.loads((stored.store.path / "manifest.json").read_text())["builds"]) == 1


def test_another_k_tokenizer_or_template_is_another_key(tmp_path, backend):
    base = session(tmp_path, backend).key()[0]
    assert session(tmp_path, backend, k=K + 1).key()[0] != base
    assert session(tmp_path, backend, dtype="bfloat16").key()[0] != base
    assert session(tmp_path, backend, tokenizer=word_tokenizer(VOCAB + 1)).key()[0] != base
    assert session(tmp_path, backend, data=examples(template=6)).key()[0] != base
    assert session(tmp_path, HFTeacherBackend(tiny_llama(2))).key()[0] != base
    assert session(tmp_path, backend).key()[0] == base


def test_a_truncated_store_file_is_detected_and_rebuilt(tmp_path, backend, caplog):
    first = session(tmp_path, backend)
    stored = first.open()
    expected = np.array(stored.logprobs)
    path = stored.store.path / "topk_logprobs.npy"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with caplog.at_level(logging.WARNING):
        again = session(tmp_path, backend)
        rebuilt = again.open()
    assert "entry 'topk_logprobs' is damaged" in caplog.text and "built again" in caplog.text
    assert again.report["built"] == ["topk_ids", "topk_logprobs"]
    assert np.array_equal(np.array(rebuilt.logprobs), expected)
    assert len(json.loads((stored.store.path / "manifest.json").read_text())["builds"]) == 2


def test_a_batch_whose_completions_changed_under_the_key_is_refused(tmp_path, backend):
    from forge.teachers.cache.signals import CacheMismatchError

    stored = session(tmp_path, backend).open()
    index = torch.tensor([0, 1])
    mask = torch.ones(2, int(stored.lengths[[0, 1]].max()) + 1, dtype=torch.long)
    with pytest.raises(CacheMismatchError, match="completion tokens for examples"):
        stored.view(index, mask)


def test_a_truncated_lengths_file_is_detected_and_everything_rebuilt(tmp_path, backend, caplog):
    stored = session(tmp_path, backend).open()
    expected = np.array(stored.ids)
    path = stored.store.path / "lengths.npy"
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 8)
    with caplog.at_level(logging.WARNING):
        again = session(tmp_path, backend)
        rebuilt = again.open()
    assert "lengths.npy is damaged" in caplog.text
    assert again.report["built"] == ["topk_ids", "topk_logprobs"]
    assert np.array_equal(np.array(rebuilt.ids), expected) and rebuilt.tokens == stored.tokens


def test_the_tail_mass_is_stored_for_a_tail_bucket_and_read_back(tmp_path, backend):
    data = examples()
    plain = session(tmp_path, backend, data=data)
    plain.open()
    with_tail = session(tmp_path, backend, data=data, tail=True)
    stored = with_tail.open()  # the same key: the missing tail entry is built in a second pass
    assert with_tail.report["built"] == ["topk_ids", "topk_logprobs", "topk_tail"] and with_tail.report["tail"]
    assert with_tail.report["dir"] == plain.report["dir"]
    index = torch.tensor([4, 1])
    batch = CausalLMCollator(PAD)([data[int(i)] for i in index])
    mask = batch["completion_attention_mask"]
    live = batch_view(backend, batch, K)
    view = stored.view(index, mask)
    counted = mask.bool()
    # the tail is log(1 − Σ top-k p) of the full distribution, stored in float16
    assert torch.allclose(view.tail[counted], live.tail[counted], rtol=2.0 ** -10, atol=2.0 ** -24)
    assert bool((view.tail[counted] < 0).all())
    assert session(tmp_path, backend, data=data).open().tail is None  # a reader without a tail bucket
