"""lm-evaluation-harness on a Forge model with the local Europarl task: lm-eval's word/byte
perplexity and bits per byte against a hand computation of the same rolling log-likelihood (one
window per short document, after lm-eval's prefix token), and the command's bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch

pytest.importorskip("lm_eval")

from forge.eval.lm_eval_runner import europarl_heldout_file, evaluate  # noqa: E402
from forge.lm_eval import main  # noqa: E402
from forge.data.translation import read_pairs_tsv  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

EUROPARL = SHARED_DATA / "europarl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small random Llama with SmolLM2's real tokenizer, saved as a model directory."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from forge.models.packaged import resolve_packaged_dir

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_packaged_dir("SmolLM2-135M-Instruct")))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=512, tie_word_embeddings=True))
    out = tmp_path_factory.mktemp("lm") / "model"
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def test_lm_eval_perplexities_are_the_hand_computed_rolling_log_likelihood(model_dir):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    results = evaluate(model, tokenizer, ["europarl_heldout_fr"], data_dir=EUROPARL, limit=3)["europarl_heldout_fr"]

    prefix = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1).prefix_token_id
    texts = list(read_pairs_tsv(europarl_heldout_file(EUROPARL), "fr", "en").sources)[:3]
    loglik, words, nbytes = 0.0, 0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([[prefix, *ids]])).logits[0].double(), -1)
        loglik += float(logprobs[torch.arange(len(ids)), torch.tensor(ids)].sum())
        words += len(re.split(r"\s+", text))
        nbytes += len(text.encode("utf-8"))
    assert results["word_perplexity"] == pytest.approx(math.exp(-loglik / words), rel=1e-4)
    assert results["byte_perplexity"] == pytest.approx(math.exp(-loglik / nbytes), rel=1e-4)
    assert results["bits_per_byte"] == pytest.approx(-loglik / nbytes / math.log(2), rel=1e-4)


def test_the_command_on_a_model_directory_and_its_bad_input(model_dir, tmp_path, capsys):
    assert main([str(model_dir), "tasks=europarl_heldout_en", f"data_dir={EUROPARL}", "limit=2"]) == 0
    assert "europarl_heldout_en: bits_per_byte" in capsys.readouterr().out
    for argv, said in [([str(model_dir)], "tasks= is required"),
                       ([str(model_dir), "tasks=x", "lr=1"], "unknown option(s) ['lr']"),
                       ([str(tmp_path / "absent"), "tasks=x"], "is not a directory"),
                       ([str(model_dir), "tasks=europarl_heldout_fr"], "pass data_dir=PATH"),
                       ([str(tmp_path), "tasks=europarl_heldout_fr"], "holds no model")]:
        assert main(argv) == 2
        assert said in capsys.readouterr().err
