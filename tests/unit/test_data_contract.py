"""The task-handler contract (forge.data.base): shared fields set once in TaskDataHandler, every
handler built from its config keys, `prepare(processor, teacher_context=None)` with context baking
declared by `supports_teacher_context`, the direction of the primary metric, and one meaning of
MODEL_INPUT_KEYS."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

import forge.data.collate as collate
from forge.config.schema import GlueTaskConfig, TaskConfig, TranslationTaskConfig
from forge.data.base import MODEL_INPUT_KEYS, TOKENIZER_INPUT_KEYS, TaskDataHandler, model_inputs
from forge.data.classification import ClassificationHandler
from forge.data.demo import DemoHandler
from forge.data.glue import GlueHandler
from forge.data.prompted import PromptCompletionHandler
from forge.data.translation import TranslationHandler

REPO = Path(__file__).resolve().parents[2]
TASK_OPTIONS = sorted(p.stem for p in (REPO / "conf/task").glob("*.yaml"))
SHARED = ("name", "data_dir", "max_train_samples", "max_eval_samples", "max_length", "seed")
SCHEMAS = {DemoHandler: TaskConfig, GlueHandler: GlueTaskConfig, TranslationHandler: TranslationTaskConfig}


def compose_task(option: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from forge.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        return compose(config_name=None, overrides=[f"+task={option}", "+seed=13", *overrides]).task


# ---- shared fields, declared once -------------------------------------------------------------


def test_shared_fields_are_declared_only_by_the_base() -> None:
    base = list(inspect.signature(TaskDataHandler.__init__).parameters)[1:]
    assert tuple(base) == SHARED
    for cls in (ClassificationHandler, DemoHandler, GlueHandler, PromptCompletionHandler, TranslationHandler):
        own = cls.__dict__.get("__init__")
        if own is None:
            continue
        params = inspect.signature(own).parameters
        assert "common" in params and params["common"].kind is inspect.Parameter.VAR_KEYWORD
        # a subclass may re-declare a shared field only to change its default (or require it)
        assert set(params) & set(SHARED) <= {"name", "max_length"}, cls.__name__
        assert "self.data_dir =" not in inspect.getsource(own) and "self.seed =" not in inspect.getsource(own)


@pytest.mark.parametrize("cls", list(SCHEMAS))
def test_config_keys_match_the_task_schema(cls) -> None:
    schema_keys = {f.name for f in fields(SCHEMAS[cls])} - {"_target_"}
    assert set(cls.config_keys()) == schema_keys
    assert len(cls.config_keys()) == len(schema_keys)  # each key once
    assert cls.config_keys()[0] == "name"


@pytest.mark.parametrize("option", TASK_OPTIONS)
def test_every_task_option_builds_from_its_config_keys(option: str) -> None:
    from hydra.utils import instantiate

    cfg = compose_task(option, "task.max_train_samples=7", "task.max_eval_samples=3", "task.max_length=40")
    handler = instantiate(cfg, _convert_="all")
    assert set(type(handler).config_keys()) == set(cfg) - {"_target_"}
    for key in set(cfg) - {"_target_"}:
        assert getattr(handler, key) == cfg[key], key
    assert (handler.name, handler.seed, handler.max_train_samples, handler.max_eval_samples,
            handler.max_length) == (option, 13, 7, 3, 40)
    assert handler.validate() == []


def test_constructor_defaults_are_kept() -> None:
    demo = DemoHandler()
    assert (demo.name, demo.data_dir, demo.max_length, demo.seed, demo.max_train_samples) == (
        "demo", None, 64, 42, None)
    glue = GlueHandler(name="sst2", glue_task="sst2")
    assert (glue.max_length, glue.seed, glue.hub_dataset, glue.max_eval_samples) == (128, 42, "nyu-mll/glue", None)
    translation = TranslationHandler(name="europarl_en_fr")
    assert (translation.max_length, translation.max_new_tokens, translation.num_beams) == (256, 96, 1)
    assert translation.prompt_template.startswith("Translate the following English text to French.")
    full = GlueHandler(name="q", glue_task="qqp", data_dir="/d", max_train_samples=3, max_eval_samples=4,
                       max_length=5, seed=6, hub_dataset="h")
    assert [getattr(full, k) for k in GlueHandler.config_keys()] == ["q", "qqp", "h", "/d", 3, 4, 5, 6]
    with pytest.raises(TypeError, match="max_len"):
        GlueHandler(name="sst2", glue_task="sst2", max_len=5)  # a misspelt key still fails loudly


def test_shared_fields_are_range_checked_once_by_the_task_schema() -> None:
    """The caps and max_length of every task are declared on its schema (TaskConfig and subclasses)
    and reported once per key, not again by the handler."""
    from forge.config.errors import ConfigError
    from forge.plan import build_plan
    from tests.conftest import SHARED_DATA, compose_config

    for task in ("task=demo", "task=sst2", "task=europarl_en_fr"):
        extra = [f"task.data_dir={SHARED_DATA / 'europarl'}", "model=smollm2"] if "europarl" in task else []
        with pytest.raises(ConfigError) as err:
            build_plan(compose_config([task, *extra, "task.max_train_samples=0", "task.max_length=-2"]))
        keys = [p.key for p in err.value.problems]
        assert sorted(keys) == ["task.max_length", "task.max_train_samples"], keys
        assert "must be >= 1 or null" in err.value.problems[keys.index("task.max_train_samples")].message


# ---- prepare(processor, teacher_context) ------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: DemoHandler(),
                                  lambda: GlueHandler(name="cola", glue_task="cola", data_dir="/nowhere")])
def test_classification_refuses_a_teacher_context(make) -> None:
    h = make()
    assert h.supports_teacher_context is False
    # refused before any data is read or tokenised (no processor needed to find out)
    with pytest.raises(ValueError, match=rf"task '{h.name}' \({type(h).__name__}\) does not support a teacher "
                                         r"context \(context baking\).*teacher_strategy.context=null"):
        h.prepare(None, teacher_context="You are a careful annotator.")


def test_prepare_signature_is_the_same_everywhere() -> None:
    for cls in (TaskDataHandler, ClassificationHandler, PromptCompletionHandler):
        params = inspect.signature(cls.prepare).parameters
        assert list(params) == ["self", "processor", "teacher_context"], cls.__name__
        assert params["teacher_context"].default is None
    assert PromptCompletionHandler.supports_teacher_context is True
    assert TranslationHandler.supports_teacher_context is True
    assert TaskDataHandler.supports_teacher_context is False
    h = TranslationHandler(name="t")
    with pytest.raises(ValueError, match="teacher_context is empty"):
        h.check_teacher_context(" \n")
    assert h.check_teacher_context("Glossary: House = Parlement.") is None


# ---- the direction of the primary metric ------------------------------------------------------


#: tasks whose primary metric is an error rate (OmniDocBench reports normalised edit distance)
LOWER_IS_BETTER = {"omnidocbench"}


@pytest.mark.parametrize("option", TASK_OPTIONS)
def test_greater_is_better_on_every_task(option: str) -> None:
    from hydra.utils import instantiate

    handler = instantiate(compose_task(option), _convert_="all")
    # accuracy, MCC, BLEU, pass rates: scores; an edit distance: an error rate
    assert handler.greater_is_better is (option not in LOWER_IS_BETTER)
    assert handler.primary_metric in handler.metric_names


def test_greater_is_better_is_declared_by_each_family() -> None:
    assert TaskDataHandler.greater_is_better is True
    assert "greater_is_better" in vars(ClassificationHandler)
    assert "greater_is_better" in vars(TranslationHandler)
    info = TranslationHandler(name="t").describe([1, 2, 3], {"validation": [1]})
    assert info == {"task": "t", "source": "hub:Helsinki-NLP/europarl/en-fr", "num_train": 3,
                    "num_eval": {"validation": 1}, "metrics": ["bleu", "chrf"], "primary_metric": "bleu",
                    "greater_is_better": True, "source_lang": "en", "target_lang": "fr"}


# ---- one MODEL_INPUT_KEYS ---------------------------------------------------------------------


def test_model_input_keys_have_one_meaning() -> None:
    assert not hasattr(collate, "MODEL_INPUT_KEYS")
    assert TOKENIZER_INPUT_KEYS == ("input_ids", "attention_mask", "token_type_ids")
    assert {"labels", "pixel_values", "image_grid_thw"} <= set(MODEL_INPUT_KEYS)
    assert set(TOKENIZER_INPUT_KEYS) < set(MODEL_INPUT_KEYS)
    batch = {"input_ids": 1, "labels": 2, "pixel_values": 3, "references": ["a"], "prompt_input_ids": 4}
    assert model_inputs(batch) == {"input_ids": 1, "labels": 2, "pixel_values": 3}
