"""Every path that scores a page prompt's completion gives the logits of the training forward pass
(right-padded prompt + markdown, pixels from the collator): on-policy GKD's student pass, the hf
teacher backend, and the RL trainer's forward arguments. Without the pixels they differ, so the
agreement shows the pixels arrive."""

from __future__ import annotations

import pytest
import torch

from forge.data.base import model_inputs
from forge.data.ocr_synth import OcrSynthHandler

pytestmark = pytest.mark.integration

STUDENT = {"source": "packaged", "name_or_path": "tiny-qwen3vl-student"}


def two_page_batch(spec: dict) -> tuple:
    """The processor of model `spec` and a training batch of two small synthetic pages."""
    from forge.models.loading import load_processor

    processor = load_processor(spec, kind="vision_lm")
    handler = OcrSynthHandler(name="ocr_synth", num_train=2, num_validation=1, max_length=320, max_pixels=50176,
                              page={"width": 160, "height": 224, "margin": 12, "font_size": 11, "blocks": 2})
    data = handler.prepare(processor)
    return processor, data.collator([data.train[0], data.train[1]])


@pytest.fixture(scope="module")
def setting():
    from forge.models.loading import load_model

    processor, batch = two_page_batch(STUDENT)
    torch.manual_seed(0)
    model = load_model(STUDENT, kind="vision_lm").eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in model_inputs(batch).items() if k != "labels"}).logits
    return processor, model, batch, logits


def expected(batch, logits):
    """Per row, the training pass's logits predicting each markdown token."""
    rows = []
    for i in range(batch["input_ids"].shape[0]):
        n_prompt = int(batch["prompt_attention_mask"][i].sum())
        n_completion = int(batch["completion_attention_mask"][i].sum())
        rows.append(logits[i, n_prompt - 1:n_prompt - 1 + n_completion])
    return rows


def same_as_training(batch, logits, got):
    for i, want in enumerate(expected(batch, logits)):
        assert torch.allclose(got[i, :want.shape[0]], want, atol=1e-4), i


def test_gkd_student_pass_and_hf_teacher_backend(setting):
    from forge.decoding.token_logprobs import completion_request
    from forge.decoding.vision import vision_inputs
    from forge.teachers.backends.hf import HFTeacherBackend
    from forge.trainers.gkd import student_completion_logits

    _, model, batch, logits = setting
    args = (batch["prompt_input_ids"], batch["prompt_attention_mask"], batch["completion_input_ids"],
            batch["completion_attention_mask"])
    with torch.no_grad():
        student = student_completion_logits(model, *args, vision_inputs(batch))
        blind = student_completion_logits(model, *args)  # no pixels: the image tokens see nothing
    same_as_training(batch, logits, student)
    assert not torch.allclose(student, blind, atol=1e-2)
    teacher = HFTeacherBackend(model).logits(completion_request(*args, vision=vision_inputs(batch)))
    start = batch["prompt_input_ids"].shape[1] - 1
    same_as_training(batch, logits, teacher[:, start:start + batch["completion_input_ids"].shape[1]])


def test_rl_page_batch_gives_the_forward_its_pixels(setting):
    from forge.data.page_collate import IMAGE
    from forge.data.prompt_rows import RL_PAGE
    from forge.trainers.rl_pages import PageBatch

    processor, model, batch, logits = setting
    rows = [{RL_PAGE: page} for page in batch["pages"]]
    pages = PageBatch.from_rows(rows, processor, "cpu")
    assert PageBatch.from_rows([{IMAGE + "_not": b""}], processor, "cpu") is None
    ids = torch.cat([batch["prompt_input_ids"], batch["completion_input_ids"]], dim=1)
    mask = torch.cat([batch["prompt_attention_mask"], batch["completion_attention_mask"]], dim=1)
    kwargs = pages.forward_kwargs(ids)
    assert kwargs.pop("num_images") == [1, 1]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, **kwargs).logits
    start = batch["prompt_input_ids"].shape[1] - 1
    same_as_training(batch, logits, out[:, start:start + batch["completion_input_ids"].shape[1]])
