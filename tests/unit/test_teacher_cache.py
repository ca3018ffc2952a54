"""The teacher-signal cache: stored signals equal the live teacher's, only mapped layers are
stored, keys follow content, and the config refuses the cache where it would be wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forge.config.errors import ConfigError
from forge.plan import build_plan
from forge.losses.base import Needs
from forge.teachers.cache.build import build_entries, example_lengths
from forge.teachers.cache.fingerprint import dataset_fingerprint, state_dict_fingerprint, tokenizer_fingerprint
from forge.data.indexing import EXAMPLE_INDEX_KEY, IndexedCollator, IndexedDataset
from forge.teachers.cache.session import wanted_entries
from forge.teachers.cache.signals import CacheMismatchError, CachedTeacherSignals
from forge.teachers.cache.store import SignalStore

FAR = ["task=demo", "model=minilm", "mode=kd", "loss=combined_far", "task.max_train_samples=24",
       "task.max_length=32"]


@pytest.fixture(scope="module")
def pieces():
    """The demo task's data, the MiniLM teacher (eager: attention maps) and a bound FAR loss."""
    from tests.conftest import compose_config
    from forge.models.loading import load_model, load_tokenizer

    cfg = compose_config(FAR)
    plan = build_plan(cfg)
    plan.loss.bind(plan.student_info, plan.teacher_info)
    tokenizer = load_tokenizer(cfg.model.student)
    data = plan.handler.prepare(tokenizer)
    torch.manual_seed(0)
    teacher = load_model(cfg.model.teacher, kind="classification", num_labels=2, attn_implementation="eager").eval()
    return cfg, plan, tokenizer, data, teacher


def _build(tmp_path, pieces, dtype):
    cfg, plan, _, data, teacher = pieces
    store = SignalStore(tmp_path / "sig")
    store.init("k", {"test": True}, example_lengths(data.train))
    wanted = wanted_entries(plan.loss, plan.teacher_info.num_layers)
    build_entries(store, teacher, data.train, data.collator, wanted, dtype=np.dtype(dtype), batch_size=5)
    return store, wanted


def test_only_the_mapped_layers_are_stored(pieces):
    _, plan, *_ = pieces
    # combined_far on MiniLM 3 <- 6 layers: uniform map student 1,2,3 -> teacher 2,4,6
    assert wanted_entries(plan.loss, plan.teacher_info.num_layers) == [
        "logits", "hidden_2", "hidden_4", "hidden_6", "attn_1", "attn_3", "attn_5"]


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float16", 2e-3)])
def test_cached_view_equals_the_live_teacher(tmp_path, pieces, dtype, tol):
    cfg, plan, _, data, teacher = pieces
    store, wanted = _build(tmp_path, pieces, dtype)
    signals = CachedTeacherSignals(store, needs=plan.loss.needs, hidden=frozenset({2, 4, 6}),
                                   attentions=frozenset({1, 3, 5}), num_layers=6)
    order = [7, 3, 19, 0, 11, 23]  # a shuffled batch, padded to its own longest example
    batch = IndexedCollator(data.collator)([IndexedDataset(data.train)[i] for i in order])
    assert batch[EXAMPLE_INDEX_KEY].tolist() == order
    with torch.no_grad():
        live = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch.get("token_type_ids"), output_hidden_states=True, output_attentions=True)
    view = signals.view(batch[EXAMPLE_INDEX_KEY], batch["attention_mask"])
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(view.logits, live.logits, atol=tol * 10, rtol=tol)
    assert view.hidden_states[1] is None and view.attentions[0] is None  # not mapped: not stored
    for layer in (2, 4, 6):
        torch.testing.assert_close(view.hidden_states[layer][mask], live.hidden_states[layer][mask],
                                   atol=tol * 10, rtol=tol)
        assert view.hidden_states[layer][~mask].abs().sum() == 0
    for layer in (1, 3, 5):
        for b in range(len(order)):
            n = int(mask[b].sum())
            torch.testing.assert_close(view.attentions[layer][b, :, :n, :n], live.attentions[layer][b, :, :n, :n],
                                       atol=tol, rtol=tol)
    # ragged storage: hidden rows = real tokens, attention = heads * len^2 per example
    lengths = example_lengths(data.train)
    assert store.open("hidden_2").shape == (lengths.sum(), 384)
    assert store.open("attn_1").shape == (12 * (lengths ** 2).sum(),)
    assert store.open("hidden_2").dtype == np.dtype(dtype)


def test_a_batch_that_does_not_match_the_cache_is_refused(tmp_path, pieces):
    _, plan, _, data, _ = pieces
    store, _ = _build(tmp_path, pieces, "float16")
    signals = CachedTeacherSignals(store, needs=Needs(logits=True), hidden=frozenset(), attentions=frozenset(),
                                   num_layers=6)
    n = int(example_lengths(data.train)[0])
    assert signals.view(torch.tensor([0]), torch.ones(1, n, dtype=torch.long)).logits.shape == (1, 2)
    with pytest.raises(CacheMismatchError, match="data changed"):
        signals.view(torch.tensor([0]), torch.ones(1, n + 1, dtype=torch.long))


def test_an_interrupted_build_leaves_no_entry(tmp_path, pieces):
    _, plan, _, data, teacher = pieces
    store = SignalStore(tmp_path / "sig")
    store.init("k", {}, example_lengths(data.train))

    def broken_collator(features):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_entries(store, teacher, data.train, broken_collator, ["logits"], dtype=np.dtype("float16"))
    assert store.missing(["logits"]) == ["logits"]
    assert not [p for p in store.path.iterdir() if "partial" in p.name]


def test_fingerprints_follow_content(pieces):
    cfg, plan, tokenizer, data, teacher = pieces
    fp = state_dict_fingerprint(teacher)
    with torch.no_grad():
        teacher.classifier.bias.add_(1e-3)
    try:
        assert state_dict_fingerprint(teacher) != fp
    finally:
        with torch.no_grad():
            teacher.classifier.bias.sub_(1e-3)
    keys = ["input_ids", "attention_mask"]
    assert dataset_fingerprint(data.train, keys) == dataset_fingerprint(data.train, keys)
    assert dataset_fingerprint(data.train, keys) != dataset_fingerprint(data.train.select(range(23)), keys)
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(tokenizer)


def _plan(overrides):
    from tests.conftest import compose_config

    return build_plan(compose_config(["task=demo", "model=minilm", "mode=kd", *overrides]))


def test_cache_is_used_for_a_frozen_teacher():
    plan = _plan(["loss=combined_far", "teacher_strategy=frozen_sft"])
    assert plan.cache.enabled and plan.cache.dtype == "float16"


@pytest.mark.parametrize("strategy", ["cotrain_sft", "cotrain_base"])
def test_co_trained_teacher_is_refused(strategy):
    loss = "combined_fa" if strategy == "cotrain_base" else "combined_far"
    plan = _plan([f"loss={loss}", f"teacher_strategy={strategy}"])
    assert not plan.cache.enabled and "co-trained" in plan.cache.reason
    with pytest.raises(ConfigError) as err:
        _plan([f"loss={loss}", f"teacher_strategy={strategy}", "teacher.cache=on"])
    text = str(err.value)
    assert "teacher.cache" in text and "co-trained" in text and "teacher.cache=off" in text


def test_gkd_reads_a_stored_top_k_view_for_any_lmbda_but_never_dense_logits():
    from forge.teachers.provider import TeacherKind
    from tests.conftest import compose_config

    gkd = ["task=europarl_en_fr", "model=smollm2", "mode=gkd", "mode.trainer.lmbda=0.5"]
    plan = build_plan(compose_config([*gkd, "mode.trainer.top_k=20", "teacher.cache=on"]))
    assert plan.cache.enabled and plan.cache.topk.k == 20 and plan.cache.topk.dtype == "float16"
    assert plan.teacher_kind == TeacherKind.live  # the backend stays: on-policy batches are scored live
    with pytest.raises(ConfigError, match="dense logits"):
        build_plan(compose_config([*gkd, "teacher.cache=on"]))
    with pytest.raises(ConfigError, match="seq_kd=true"):
        build_plan(compose_config([*gkd, "mode.trainer.top_k=20", "mode.trainer.seq_kd=true", "teacher.cache=on"]))


def test_augmented_inputs_are_refused(monkeypatch):
    from forge.data.demo import DemoHandler

    monkeypatch.setattr(DemoHandler, "augments_inputs", True)
    plan = _plan(["loss=combined_fa"])
    assert not plan.cache.enabled and "augments its inputs" in plan.cache.reason
    with pytest.raises(ConfigError, match="augments its inputs"):
        _plan(["loss=combined_fa", "teacher.cache=on"])


def test_bad_cache_settings_name_the_key_and_choices():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:  # the schema's enum, at compose time
        _plan(["loss=combined_fa", "teacher.cache=sometimes"])
    text = f"{err.value} {err.value.__cause__}"
    assert "teacher.cache" in text and "auto" in text and "off" in text
