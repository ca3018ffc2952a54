"""PromptCompletionHandler is a reusable base: a toy prompt→text task (reverse the words of the
source; two or three in-memory rows; its own metric, an error rate) prepares real data with the
real SmolLM2 tokenizer, caps, truncates, bakes a teacher context, generates and scores, with no
code of its own beyond its rows, its metric and its config check."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from forge.config.errors import ConfigProblem
from forge.data.base import sample_indices
from forge.data.causal_collate import IGNORE_INDEX
from forge.data.prompt_pairs import PromptPairs
from forge.data.prompted import PromptCompletionHandler
from tests.unit.test_translation_data import _ScriptedLM, tokenizer  # noqa: F401  (the module fixture)

PROMPT = "Reverse: {source}\nReversed:"
TRAIN = [("red green blue", "blue green red"), ("one two", "two one"), ("a b c d", "d c b a")]
EVAL = [("up down", "down up"), ("left right", "right left")]
EOS = 2  # <|im_end|>


class ReverseWords(PromptCompletionHandler):
    """Answer with the source's words in reverse order; scored by the share of wrong answers."""

    primary_metric = "error_rate"
    greater_is_better = False
    metric_names = ("error_rate",)

    def __init__(self, name: str = "reverse_words", prompt_template: str = PROMPT,
                 rows: Optional[list[tuple[str, str]]] = None, **common: Any) -> None:
        super().__init__(name=name, prompt_template=prompt_template, **common)
        self.rows = TRAIN if rows is None else rows

    def load_splits(self) -> dict[str, PromptPairs]:
        pairs = lambda rows: PromptPairs([s for s, _ in rows], [t for _, t in rows])  # noqa: E731
        return {"train": pairs(self.rows), "validation": pairs(EVAL)}

    def compute_metrics(self, predictions: list[Any], references: list[Any]) -> dict[str, float]:
        return {"error_rate": sum(p != r for p, r in zip(predictions, references)) / len(references)}

    def validate(self) -> list[ConfigProblem]:
        bad = [s for s, t in self.rows if s.split()[::-1] != t.split()]
        extra = [ConfigProblem(key="task.rows", value=bad, message="targets must reverse their sources")] if bad else []
        return super().validate() + extra


def test_toy_task_prepares_real_token_ids(tokenizer) -> None:  # noqa: F811
    h = ReverseWords(chat_template="never")
    assert h.validate() == [] and h.num_labels == 0 and h.model_kind == "causal_lm"
    data = h.prepare(tokenizer)
    assert data.train.column_names == ["source", "target", "prompt_input_ids", "completion_input_ids"]
    first = data.train[0]
    # "Reverse: red green blue\nReversed:" and " blue green red" + EOS, pinned
    assert first["prompt_input_ids"] == [66, 31307, 42, 2382, 2654, 4461, 198, 3733, 39374, 42]
    assert first["completion_input_ids"] == [4461, 2654, 2382, EOS]
    for row, (source, target) in zip(data.train, TRAIN):
        assert row["prompt_input_ids"] == tokenizer(PROMPT.replace("{source}", source))["input_ids"]
        assert row["completion_input_ids"] == tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [EOS]
        assert (row["source"], row["target"]) == (source, target)
    batch = data.collator([data.train[1]])
    n_prompt = len(data.train[1]["prompt_input_ids"])
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] * n_prompt + [827, 582, EOS]
    assert data.evaluation_collator([data.eval_sets["validation"][0]])["references"] == ["down up"]
    zero = {"examples": 0, "source": 0, "target": 0}
    assert data.info == {
        "task": "reverse_words", "source": "None", "num_train": 3, "num_eval": {"validation": 2},
        "metrics": ["error_rate"], "primary_metric": "error_rate", "greater_is_better": False,
        "text_columns": ["source", "target"], "chat_template": False, "teacher_context": None,
        "max_length": 256, "truncated": {"train": zero, "validation": zero},
        "prompt_example": "Reverse: red green blue\nReversed:",
    }


def test_toy_task_chat_template_and_teacher_context(tokenizer) -> None:  # noqa: F811
    context = "Keep every word exactly as written."
    data = ReverseWords().prepare(tokenizer, teacher_context=context)
    user = {"role": "user", "content": "Reverse: one two\nReversed:"}
    student = tokenizer.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
    teacher = tokenizer.apply_chat_template([{"role": "system", "content": context}, user],
                                            add_generation_prompt=True, tokenize=False)
    row = data.train[1]
    assert row["prompt_input_ids"] == tokenizer(student, add_special_tokens=False)["input_ids"]
    assert row["teacher_prompt_input_ids"] == tokenizer(teacher, add_special_tokens=False)["input_ids"]
    # directly after "assistant\n": no leading space, so other ids than the plain prompt's [827, 582]
    assert row["completion_input_ids"] == tokenizer("two one", add_special_tokens=False)["input_ids"] + [EOS]
    assert row["completion_input_ids"] != [827, 582, EOS]
    assert data.info["teacher_prompt_example"].startswith(f"<|im_start|>system\n{context}<|im_end|>")
    batch = data.collator([data.train[i] for i in range(3)])
    assert batch["teacher_prompt_input_ids"].shape[0] == 3
    lengths = [len(data.train[i]["teacher_prompt_input_ids"]) for i in range(3)]
    assert batch["teacher_prompt_attention_mask"].sum(1).tolist() == lengths
    # the context takes the system slot: the template's default system message (SmolLM's) is gone
    assert "SmolLM" in student and "SmolLM" not in teacher
    assert lengths[1] == len(tokenizer(teacher, add_special_tokens=False)["input_ids"]) == 30


def test_toy_task_caps_and_truncates_through_the_base(tokenizer) -> None:  # noqa: F811
    capped = ReverseWords(chat_template="never", max_train_samples=2, max_eval_samples=1, seed=3)
    splits = capped.capped_splits()
    assert splits["train"].sources == [TRAIN[i][0] for i in sample_indices(3, 2, 3)]
    assert len(splits["validation"]) == 1
    long_source = " ".join(f"w{i}" for i in range(30))
    rows = [(long_source, " ".join(long_source.split()[::-1])), TRAIN[1]]
    short = ReverseWords(chat_template="never", rows=rows, max_length=24)
    assert short.validate() == []
    data = short.prepare(tokenizer)
    assert data.info["truncated"]["train"] == {"examples": 1, "source": 1, "target": 1}
    assert data.info["truncated"]["validation"] == {"examples": 0, "source": 0, "target": 0}
    cut = data.train[0]
    assert len(cut["prompt_input_ids"]) + len(cut["completion_input_ids"]) == 24
    assert cut["completion_input_ids"][-1] != EOS  # a cut target does not teach stopping
    assert data.train[1]["completion_input_ids"] == [827, 582, EOS]  # untouched
    assert [p.key for p in ReverseWords(rows=[("a b", "a b")], prompt_template="no slot").validate()] == [
        "task.prompt_template", "task.rows"]


def test_toy_task_generates_and_scores_with_its_own_metric(tokenizer) -> None:  # noqa: F811
    h = ReverseWords(chat_template="never", max_new_tokens=5)
    data = h.prepare(tokenizer)
    answer = tokenizer(" down up\nReverse: x", add_special_tokens=False)["input_ids"] + [EOS]
    model = _ScriptedLM(answer)
    batch = data.eval_collator([data.eval_sets["validation"][i] for i in range(2)])
    predictions = h.predict(model, batch)
    assert predictions == ["down up", "down up"]  # new tokens only, first line only
    assert model.calls[0]["max_new_tokens"] == 5 and model.calls[0]["eos_token_id"] == EOS
    assert h.compute_metrics(predictions, h.references(batch)) == {"error_rate": 0.5}
    assert ReverseWords.config_keys() == (
        "name", "prompt_template", "rows", "chat_template", "system_prompt", "max_new_tokens", "num_beams",
        "max_length", "data_dir", "max_train_samples", "max_eval_samples", "seed")
