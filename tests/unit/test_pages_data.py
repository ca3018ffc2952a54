"""Page → markdown data for vision-language models: prompts hold exactly the image tokens Qwen3-VL's
own processor would put there, the loss is on the markdown only, the collator carries the pixels,
and bad settings are refused with the key to fix."""

from __future__ import annotations

import pytest
import torch

from forge.config.errors import ConfigError
from forge.data.causal_collate import IGNORE_INDEX
from forge.data.ocr_synth import OcrSynthHandler
from forge.data.page_collate import decode_png

STUDENT = {"source": "packaged", "name_or_path": "tiny-qwen3vl-student"}
PAGE = {"width": 256, "height": 320, "margin": 16, "font_size": 12, "blocks": 3}


@pytest.fixture(scope="module")
def processor():
    from forge.models.loading import load_processor

    return load_processor(STUDENT, kind="vision_lm")


def handler(**overrides) -> OcrSynthHandler:
    settings = dict(name="ocr_synth", num_train=3, num_validation=2, page=PAGE, max_length=640)
    return OcrSynthHandler(**{**settings, **overrides})


@pytest.fixture(scope="module")
def prepared(processor):
    return handler().prepare(processor)


def test_prompt_ids_are_what_the_upstream_processor_makes(processor, prepared):
    """The stored prompt equals Qwen3VLProcessor.__call__'s expansion of the same text and image."""
    from forge.data.pages import IMAGE_MARKUP

    row = prepared.train[0]
    prompt = handler().render_prompt(IMAGE_MARKUP, processor.tokenizer)
    upstream = processor(text=[prompt], images=[decode_png(row["image"])], return_tensors="pt")
    assert row["prompt_input_ids"] == upstream["input_ids"][0].tolist()
    t, h, w = upstream["image_grid_thw"][0].tolist()
    assert row["prompt_input_ids"].count(processor.image_token_id) == t * h * w // 4  # 2x2 merge


def test_the_loss_is_on_the_markdown_only(processor, prepared):
    batch = prepared.collator([prepared.train[i] for i in range(3)])
    labels, ids = batch["labels"], batch["input_ids"]
    for row in range(3):
        example = prepared.train[row]
        n_prompt, n_completion = len(example["prompt_input_ids"]), len(example["completion_input_ids"])
        assert (labels[row, :n_prompt] == IGNORE_INDEX).all()  # every image and prompt token
        assert labels[row, n_prompt:n_prompt + n_completion].tolist() == example["completion_input_ids"]
        assert (labels[row, n_prompt + n_completion:] == IGNORE_INDEX).all()  # padding
        text = processor.tokenizer.decode(example["completion_input_ids"], skip_special_tokens=True)
        assert text == example["target"]
    image_positions = ids == processor.image_token_id
    assert not (labels[image_positions] != IGNORE_INDEX).any()
    assert torch.equal(batch["mm_token_type_ids"], image_positions.long())


def test_the_collator_carries_every_patch_of_every_page(processor, prepared):
    batch = prepared.collator([prepared.train[i] for i in range(3)])
    grid = batch["image_grid_thw"]
    assert grid.shape == (3, 3)
    assert batch["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    eval_batch = prepared.evaluation_collator([prepared.eval_sets["validation"][i] for i in range(2)])
    assert eval_batch["references"] == [prepared.eval_sets["validation"][i]["target"] for i in range(2)]
    assert torch.equal(eval_batch["prompt_mm_token_type_ids"],
                       (eval_batch["prompt_input_ids"] == processor.image_token_id).long())


def test_pages_are_the_same_for_every_run_seed(processor):
    first = handler(seed=1).prepare(processor).train["image"]
    second = handler(seed=2).prepare(processor).train["image"]
    assert first == second  # the run's seed orders training; data_seed picks the pages


def test_max_pixels_below_one_merged_patch_is_refused(processor):
    with pytest.raises(ConfigError) as err:
        handler(max_pixels=500, min_pixels=100).prepare(processor)
    assert "task.max_pixels" in str(err.value) and "1024" in str(err.value)


def test_a_prompt_longer_than_max_length_is_refused(processor):
    with pytest.raises(ConfigError) as err:
        handler(max_length=40).prepare(processor)
    assert "task.max_length" in str(err.value) and "task.max_pixels" in str(err.value)


def test_long_markdown_is_cut_without_its_eos(processor):
    data = handler(max_length=100, max_pixels=64 * 64, min_pixels=32 * 32).prepare(processor)
    row = data.train[0]
    assert len(row["prompt_input_ids"]) + len(row["completion_input_ids"]) == 100
    assert row["completion_input_ids"][-1] != processor.tokenizer.eos_token_id
    assert data.info["truncated"]["train"]["target"] == 3


def test_a_text_only_model_is_refused_with_the_fix():
    from forge.models.loading import load_tokenizer

    tokenizer = load_tokenizer({"source": "packaged", "name_or_path": "SmolLM2-135M-Instruct"})
    with pytest.raises(ConfigError) as err:
        handler().prepare(tokenizer)
    assert "model=tiny_vlm" in str(err.value) and "no image processor" in str(err.value)


def test_page_settings_are_checked_at_config_time():
    problems = handler(page={**PAGE, "font_sise": 12}).validate()
    assert [p.key for p in problems] == ["task.page.font_sise"] and "font_size" in problems[0].fix
    problems = handler(page={**PAGE, "jpeg_quality": 200}).validate()
    assert [p.key for p in problems] == ["task.page.jpeg_quality"]
    problems = handler(prompt_template="Convert this page.").validate()
    assert [p.key for p in problems] == ["task.prompt_template"] and "{image}" in problems[0].message


def test_synthetic_pages_carry_their_tests_and_score_them(processor, prepared):
    """The page_tests column (what reward=olmocr_checks reads) holds tests the true markdown passes;
    the handler's pass_rate scores answers with the same tests."""
    from forge.data.pages import PAGE_TESTS
    from forge.data.prompt_rows import prompt_rows
    from forge.eval.olmocr_metrics import pass_rate_metrics

    targets = prepared.train["target"]
    assert pass_rate_metrics(targets, prepared.train[PAGE_TESTS])["pass_rate"] == 1.0
    assert {"prompt", "reference", "page", PAGE_TESTS} <= set(prompt_rows(prepared.train).column_names)
    scores = handler().compute_metrics(targets, targets)
    assert scores == {"edit_similarity": 1.0, "exact_match": 1.0, "pass_rate": 1.0}
    wrong = handler().compute_metrics(["# Nothing here"] * 3, targets)
    assert wrong["pass_rate"] < 1.0 and wrong["exact_match"] == 0.0  # absent and baseline tests still pass


def test_a_page_that_cannot_be_decoded_is_a_data_error_naming_its_file(tmp_path):
    from functools import partial

    from PIL import Image

    from forge.config.errors import DataError
    from forge.data.pages import PagePairs

    broken = tmp_path / "page_7.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    pairs = PagePairs([partial(Image.open, broken), partial(Image.open, tmp_path / "missing.png")], ["a", "b"])
    with pytest.raises(DataError, match="page 0: cannot read or decode its image.*page_7.jpg"):
        pairs.image(0)
    with pytest.raises(DataError, match="page 1: .*missing.png"):
        pairs.image(1)


def test_context_baking_gives_the_teacher_its_own_page_prompt(processor):
    """The teacher's prompt holds the context and the same page (the same image tokens); the
    student's never sees the context; the collator marks the teacher's image tokens too."""
    data = handler().prepare(processor, teacher_context="The page is from a textbook.")
    row = data.train[0]
    image = processor.image_token_id
    assert row["teacher_prompt_input_ids"].count(image) == row["prompt_input_ids"].count(image)
    assert "textbook" in processor.tokenizer.decode(row["teacher_prompt_input_ids"])
    assert "textbook" not in processor.tokenizer.decode(row["prompt_input_ids"])
    batch = data.collator([data.train[0], data.train[1]])
    assert torch.equal(batch["teacher_prompt_mm_token_type_ids"], (batch["teacher_prompt_input_ids"] == image).long())


def test_the_teacher_can_see_each_page_at_its_own_resolution(processor):
    """task.teacher_max_pixels: the teacher's prompt holds as many image tokens as its larger view
    has merged patches, and the batch carries the teacher's own pixels beside the student's."""
    from forge.decoding.vision import vision_inputs

    data = handler(max_pixels=128 * 128, teacher_max_pixels=256 * 320).prepare(processor)
    row, image = data.train[0], processor.image_token_id
    assert row["teacher_prompt_input_ids"].count(image) > 2 * row["prompt_input_ids"].count(image)
    batch = data.collator([data.train[0], data.train[1]])
    student, teacher = vision_inputs(batch), vision_inputs(batch, "teacher_prompt")
    assert teacher.pixel_values.shape[0] == int(batch["teacher_image_grid_thw"].prod(dim=1).sum())
    assert teacher.pixel_values.shape[0] > 2 * student.pixel_values.shape[0]
    for i in range(2):
        t, h, w = batch["teacher_image_grid_thw"][i].tolist()
        assert int(teacher.prompt_token_types[i].sum()) == t * h * w // 4


def test_page_messages_put_the_page_where_the_template_does():
    from forge.data.ocr_synth import OcrSynthHandler
    from forge.teachers.backends.base import TeacherBackendError
    from forge.teachers.backends.page_messages import png_data_url, with_page

    handler = OcrSynthHandler(name="ocr_synth", prompt_template="Page: {image} Read it.", system_prompt="Be exact.")
    messages = handler.page_messages()
    assert messages == [{"role": "system", "content": "Be exact."}, {"role": "user", "content": [
        {"type": "text", "text": "Page: "}, {"type": "image"}, {"type": "text", "text": " Read it."}]}]
    assert handler.page_messages("the text layer")[0] == {"role": "system", "content": "the text layer"}
    filled = with_page(messages, b"\x89PNG")
    assert filled[1]["content"][1] == {"type": "image_url", "image_url": {"url": png_data_url(b"\x89PNG")}}
    assert png_data_url(b"\x89PNG") == "data:image/png;base64,iVBORw=="
    assert messages[1]["content"][1] == {"type": "image"}  # the task's messages are left as they were
    with pytest.raises(TeacherBackendError, match="exactly one image part, this one holds 0"):
        with_page([{"role": "user", "content": "text only"}], b"")
