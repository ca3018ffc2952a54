"""A vision-language teacher behind a real chat server (`python -m forge.teachers.serve --vlm`, which
runs `transformers serve`): each page prompt is sent as the task's chat messages with the page as a
PNG image part, and what comes back is what the same model generates in this process."""

from __future__ import annotations

import json
import urllib.request

import pytest
import torch

from tests.integration.test_vlm_scoring import two_page_batch

pytestmark = [pytest.mark.server, pytest.mark.integration]

TEACHER = {"source": "packaged", "name_or_path": "tiny-qwen3vl-teacher"}  # what `vlm_server` serves


def post(base_url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def pages():
    return two_page_batch(TEACHER)


def test_the_server_reads_the_page_the_student_is_given(vlm_server, pages):
    """The server renders the chat messages + image part into as many prompt tokens as Forge's own
    prompt (the same chat markup, the same image-token count for the same pixels)."""
    from forge.decoding.vision import vision_inputs
    from forge.teachers.backends.completions import chat_body
    from forge.teachers.backends.page_messages import page_conversations

    _, batch = pages
    conversations = page_conversations(vision_inputs(batch), 2)
    assert conversations[0][-1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    for row, messages in enumerate(conversations):
        usage = post(vlm_server, chat_body(None, messages, max_tokens=1))["usage"]
        assert usage["prompt_tokens"] == int(batch["prompt_attention_mask"][row].sum())


def test_server_generations_equal_the_in_process_models(vlm_server, pages):
    """Greedy text from the server is the text the same model generates in process from the same
    prompt ids and pixels (the server leaves out a leading space), and the backend hands it back as
    the student tokenizer's ids of that text."""
    from forge.decoding.vision import vision_inputs
    from forge.models.loading import load_model
    from forge.teachers.backends.hf import HFTeacherBackend
    from forge.teachers.backends.completions import chat_body
    from forge.teachers.backends.openai import OpenAICompatibleBackend
    from forge.teachers.backends.page_messages import page_conversations

    processor, batch = pages
    tokenizer = processor.tokenizer
    args = (batch["prompt_input_ids"], batch["prompt_attention_mask"])
    settings = {"max_new_tokens": 12, "do_sample": False, "eos_token_id": tokenizer.eos_token_id,
                "vision": vision_inputs(batch)}
    local = HFTeacherBackend(load_model(TEACHER, kind="vision_lm").eval()).generate(*args, **settings)
    served = OpenAICompatibleBackend(base_url=vlm_server, images=True, tokenizer=tokenizer, name="vlm_server")
    assert served.capabilities.images and not served.capabilities.image_scoring
    got = served.generate(*args, **settings)
    assert got.shape == (2, 12)
    for row, messages in enumerate(page_conversations(settings["vision"], 2)):
        want = tokenizer.decode(local[row], skip_special_tokens=True)
        text = post(vlm_server, chat_body(None, messages, max_tokens=12, temperature=0.0))["choices"][0]["message"]
        assert text["content"] == want.lstrip()
        assert got[row].tolist() == tokenizer(text["content"], add_special_tokens=False)["input_ids"][:12]


def test_sequence_level_kd_from_a_served_vlm_teacher(vlm_server, tmp_path):
    from tests.integration.test_vlm_runs import logged, run

    run(tmp_path / "run", "mode=gkd", "teacher_backend=vlm_server", f"teacher_backend.base_url={vlm_server}",
        "mode.trainer.seq_kd=true", "mode.trainer.lmbda=0", "mode.trainer.max_new_tokens=8", "trainer.max_steps=1")
    first = logged(tmp_path / "run")[0]
    assert first["loss/on_policy"] == 0.0 and first["loss/completion_tokens"] > 1
    assert first["loss/ce_teacher_text"] > 0 and "loss/jsd" not in first
    meta = json.loads((tmp_path / "run" / "run_metadata.json").read_text())
    backend = meta["teacher"]["backend"]
    assert meta["teacher"]["kind"] == "served" and backend["backend"] == "vlm_server" and backend["images"] is True
