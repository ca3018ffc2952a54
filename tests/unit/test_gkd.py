"""GKD building blocks on tiny real Llama models: layouts, the on-policy coin, the loss value,
teacher backends (dense vs top-k), and sampling through LoRA adapters."""

from __future__ import annotations

import pytest
import torch

from forge.losses.divergence import TopKView, generalized_jsd, topk_generalized_jsd
from forge.teachers.backends.base import ScoreRequest
from forge.decoding.generation import completion_mask, generate_completions, positions_from_mask
from forge.teachers.backends.hf import HFTeacherBackend
from forge.decoding.token_logprobs import completion_request as teacher_request
from forge.trainers.gkd import GKDSettings, on_policy_for, student_completion_logits

VOCAB, PAD, EOS = 48, 0, 2


def tiny_llama(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, eos_token_id=EOS, bos_token_id=1)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    return model


@pytest.fixture(scope="module")
def student():
    return tiny_llama(0)


@pytest.fixture(scope="module")
def teacher():
    return tiny_llama(1)


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def right_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


PROMPTS = [[1, 5, 6, 7, 8], [1, 9, 10]]
COMPLETIONS = [[11, 12, EOS], [13, 14, 15, 16, EOS]]


def test_positions_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2, 3, 3], [0, 1, 2, 3, 4, 5, 6]]


def test_completion_mask_keeps_the_first_eos_and_drops_the_rest():
    ids = torch.tensor([[5, EOS, 7, EOS], [5, 6, 7, 8], [EOS, EOS, EOS, EOS]])
    assert completion_mask(ids, [EOS]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_student_logits_on_the_padded_layout_equal_unpadded_forwards(student):
    """Left-padded prompts + right-padded completions give, at every counted completion token,
    exactly the logits of running that example alone without any padding."""
    prompt, pmask = left_pad(PROMPTS)
    comp, cmask = right_pad(COMPLETIONS)
    with torch.no_grad():
        batched = student_completion_logits(student, prompt, pmask, comp, cmask)
        for row, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS)):
            alone = student(input_ids=torch.tensor([p + c])).logits[0, len(p) - 1:len(p) - 1 + len(c)]
            torch.testing.assert_close(batched[row, :len(c)], alone, rtol=1e-4, atol=1e-5)


def test_teacher_request_marks_the_positions_predicting_completion_tokens():
    prompt, pmask = left_pad(PROMPTS)
    comp, cmask = right_pad(COMPLETIONS)
    request = teacher_request(prompt, pmask, comp, cmask)
    wanted = request.wanted()
    # row 1: prompt width 5 (2 pads), completion 5 tokens: positions 4..8 predict them
    assert wanted[1].nonzero().flatten().tolist() == [4, 5, 6, 7, 8]
    assert wanted[0].nonzero().flatten().tolist() == [4, 5, 6]
    for row in range(2):  # each wanted position's next token is a counted completion token
        for pos in wanted[row].nonzero().flatten().tolist():
            assert request.attention_mask[row, pos + 1] == 1 and pos + 1 >= prompt.shape[1]


def test_hf_backend_topk_equals_the_dense_view_and_full_k_gives_the_dense_loss(student, teacher):
    prompt, pmask = left_pad(PROMPTS)
    comp, cmask = right_pad(COMPLETIONS)
    backend = HFTeacherBackend(teacher)
    request = teacher_request(prompt, pmask, comp, cmask)
    dense = backend.logits(request)
    view = backend.topk(request, k=VOCAB, temperature=0.7)
    reference = TopKView.from_logits(dense, VOCAB, 0.7)
    torch.testing.assert_close(view.logprobs, reference.logprobs)
    start, width = prompt.shape[1] - 1, comp.shape[1]
    with torch.no_grad():
        s_logits = student_completion_logits(student, prompt, pmask, comp, cmask)
    sliced = TopKView(view.token_ids[:, start:start + width], view.logprobs[:, start:start + width], 0.7)
    for beta in (0.0, 0.5, 1.0):
        dense_loss = generalized_jsd(s_logits, dense[:, start:start + width], beta=beta, temperature=0.7,
                                     mask=cmask.bool())
        sparse_loss = topk_generalized_jsd(s_logits, sliced, beta=beta, temperature=0.7, mask=cmask.bool())
        torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
        assert dense_loss > 0


def test_the_on_policy_coin_is_a_pure_function_of_seed_and_step_with_rate_lmbda():
    draws = [on_policy_for(7, step, 0, 0.3) for step in range(4000)]
    assert draws == [on_policy_for(7, step, 0, 0.3) for step in range(4000)]
    assert abs(sum(draws) / len(draws) - 0.3) < 0.03
    assert not any(on_policy_for(7, s, 0, 0.0) for s in range(50))
    assert all(on_policy_for(7, s, 0, 1.0) for s in range(50))


def test_settings_refuse_out_of_range_values():
    for bad in ({"lmbda": 1.5}, {"beta": -0.1}, {"temperature": 0.0}, {"max_new_tokens": 0}, {"top_k": 0}):
        with pytest.raises(ValueError, match=f"mode.trainer.{next(iter(bad))}"):
            GKDSettings(**bad)


def test_generated_completions_stop_at_eos_and_are_padded_after_it(student):
    prompt, pmask = left_pad(PROMPTS)
    torch.manual_seed(0)
    out = generate_completions(student, prompt, pmask, max_new_tokens=12, temperature=1.0, do_sample=True,
                               eos_token_id=EOS, pad_token_id=PAD)
    assert out.shape[0] == 2 and 1 <= out.shape[1] <= 12
    keep = completion_mask(out, [EOS])
    assert (out[keep == 0] == PAD).all()
    greedy_a = generate_completions(student, prompt, pmask, max_new_tokens=6, do_sample=False, eos_token_id=EOS)
    greedy_b = generate_completions(student, prompt, pmask, max_new_tokens=6, do_sample=False, eos_token_id=EOS)
    assert torch.equal(greedy_a, greedy_b)
    # the left-padded row generates what it generates alone
    alone = generate_completions(student, torch.tensor([PROMPTS[1]]), torch.ones(1, 3, dtype=torch.long),
                                 max_new_tokens=6, do_sample=False, eos_token_id=EOS)
    n = alone.shape[1]
    assert torch.equal(greedy_a[1, :n], alone[0])


def test_the_student_samples_with_its_lora_adapters_enabled():
    """On-policy samples come from the model being trained: with non-zero adapters, greedy
    completions follow the adapted weights, not the base model's."""
    from forge.models.lora import apply_lora

    model = apply_lora(tiny_llama(3), {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                       "target_modules": ["q_proj", "v_proj"]}, kind="causal_lm")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    prompt, pmask = left_pad(PROMPTS)
    adapted = generate_completions(model, prompt, pmask, max_new_tokens=8, do_sample=False, eos_token_id=EOS)
    with model.disable_adapter():
        base = generate_completions(model, prompt, pmask, max_new_tokens=8, do_sample=False, eos_token_id=EOS)
    assert not torch.equal(adapted, base)
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([PROMPTS[1]])).logits[0, -1].argmax()
    assert int(adapted[1, 0]) == int(expected)


def test_score_request_default_positions_skip_padding_and_the_last_token():
    ids, mask = right_pad([[1, 2, 3], [1, 2]])
    assert ScoreRequest(ids, mask).wanted().tolist() == [[True, True, False], [True, False, False]]


def test_hf_backend_top_k_gives_only_a_server_s_view(teacher):
    """teacher_backend.top_k=N: the in-process teacher behaves as a server with max_k=N would."""
    from forge.decoding.scoring import TeacherBackendError

    prompt, pmask = left_pad(PROMPTS)
    completion, cmask = right_pad(COMPLETIONS)
    request = teacher_request(prompt, pmask, completion, cmask)
    limited = HFTeacherBackend(teacher, top_k=4)
    caps = limited.capabilities
    assert (caps.dense_logits, caps.topk_logprobs, caps.max_k) == (False, True, 4)
    assert HFTeacherBackend.declared_capabilities({"top_k": 4}) == caps
    assert HFTeacherBackend.declared_capabilities({"top_k": None}).dense_logits
    with pytest.raises(TeacherBackendError, match="top_k=4"):
        limited.logits(request)
    with pytest.raises(TeacherBackendError, match="at most 4"):
        limited.topk(request, 5)
    view = limited.topk(request, 3, temperature=0.7)
    expected = TopKView.from_logits(HFTeacherBackend(teacher).logits(request), 3, 0.7)
    torch.testing.assert_close(view.logprobs, expected.logprobs)
    assert torch.equal(view.token_ids, expected.token_ids)


def test_hf_backend_top_k_is_checked_against_the_mode_at_config_time():
    from forge.config.errors import ConfigError
    from forge.plan import build_plan
    from tests.conftest import SHARED_DATA, compose_config

    base = ["task=europarl_en_fr", f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2", "mode=gkd",
            "teacher_backend.top_k=8"]
    with pytest.raises(ConfigError, match="mode.trainer.top_k"):
        build_plan(compose_config(base))  # dense logits asked for
    with pytest.raises(ConfigError, match=r"exceeds what teacher_backend=hf returns \(8\)"):
        build_plan(compose_config([*base, "mode.trainer.top_k=16"]))
    assert build_plan(compose_config([*base, "mode.trainer.top_k=8"])).teacher_needs.topk
