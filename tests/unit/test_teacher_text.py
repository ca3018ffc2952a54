"""The teacher's stored completions (sequence-level KD from the store), on a tiny real Llama teacher:
each is what the teacher samples for that prompt with the build's seed, they are written once and
read back, the key follows the generation settings, and the top-k store then describes them."""

from __future__ import annotations

import json

import pytest
import torch

from forge.data.causal_collate import CausalLMCollator
from forge.decoding.generation import completion_mask
from forge.runtime.seeds import derived_seed, seeded
from forge.teachers.cache.teacher_pass import TeacherPass
from forge.teachers.cache.teacher_text import TeacherText, TeacherTextSession, TeacherWritten
from forge.teachers.cache.topk_session import TopKStoreSession, batch_view
from forge.teachers.cache.topk_store import TopKSpec
from forge.teachers.backends.hf import HFTeacherBackend
from tests.unit.test_gkd import EOS, PAD, tiny_llama
from tests.unit.test_topk_store import examples, word_tokenizer

TEXT = TeacherText(max_new_tokens=5, temperature=1.0, seed=3)


@pytest.fixture(scope="module")
def backend():
    return HFTeacherBackend(tiny_llama(1))


def text_session(tmp_path, backend, data, spec=TEXT, batch_size=4) -> TeacherTextSession:
    return TeacherTextSession(TeacherPass(root=tmp_path, backend=backend, dataset=data, collator=CausalLMCollator(PAD),
                                          tokenizer=word_tokenizer(), batch_size=batch_size), spec)


def test_each_stored_completion_is_the_teachers_sample_for_its_prompt(tmp_path, backend):
    data = examples(7)
    written, report = text_session(tmp_path, backend, data, batch_size=7).open()
    assert report["built"] and report["examples"] == 7 and report["tokens"] == sum(len(c) for c in written.completions)
    # one batch of all prompts, ordered by prompt length (stable), seeded by its first example
    order = sorted(range(7), key=lambda i: len(data[i]["prompt_input_ids"]))
    batch = CausalLMCollator(PAD)([data[i] for i in order])
    with seeded(derived_seed(TEXT.seed, f"seq_kd_completions:{order[0]}")):
        ids = backend.generate(batch["prompt_input_ids"], batch["prompt_attention_mask"], max_new_tokens=5,
                               temperature=1.0, do_sample=True, eos_token_id=[EOS])
    keep = completion_mask(ids, [EOS]).bool()
    for row, i in enumerate(order):
        assert written.completions[i] == ids[row][keep[row]].tolist()
        assert 1 <= len(written.completions[i]) <= 5
        assert written[i]["prompt_input_ids"] == data[i]["prompt_input_ids"]
        assert written[i]["completion_input_ids"] == written.completions[i]
    assert written["completion_input_ids"] == written.completions and written.column_names == list(data[0])


def test_the_completions_are_written_once_and_the_key_follows_the_generation(tmp_path, backend):
    data = examples(6)
    first, _ = text_session(tmp_path, backend, data).open()
    again, report = text_session(tmp_path, backend, data).open()
    assert not report["built"] and again.completions == first.completions
    manifest = json.loads((tmp_path / "signals").joinpath(report["dir"].split("/")[-1], "manifest.json").read_text())
    assert len(manifest["builds"]) == 1
    base = text_session(tmp_path, backend, data).key()[0]
    for other in (TeacherText(6, 1.0, 3), TeacherText(5, 0.7, 3), TeacherText(5, 1.0, 4)):
        assert text_session(tmp_path, backend, data, spec=other).key()[0] != base
    assert text_session(tmp_path, backend, examples(6, template=6)).key()[0] != base


def test_the_top_k_store_describes_the_teachers_completions(tmp_path, backend):
    data = examples(6)
    session = TopKStoreSession(TeacherPass(root=tmp_path, backend=backend, dataset=data, collator=CausalLMCollator(PAD),
                                           tokenizer=word_tokenizer(), batch_size=4), TopKSpec(4, teacher_text=TEXT))
    assert session.train_set is data
    stored = session.open()
    written = session.train_set
    assert isinstance(written, TeacherWritten) and session.report["teacher_completions"]["examples"] == 6
    assert stored.tokens == sum(len(c) for c in written.completions)
    index = torch.tensor([2, 5])
    batch = CausalLMCollator(PAD)([written[int(i)] for i in index])
    mask = batch["completion_attention_mask"]
    live, view = batch_view(backend, batch, 4), stored.view(index, mask)
    counted = mask.bool()
    assert torch.equal(view.token_ids[counted], live.token_ids[counted])
    assert torch.allclose(view.logprobs[counted], live.logprobs[counted], atol=1e-2)
