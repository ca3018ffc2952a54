"""Arm names (forge.config.arm_names): the same text from a typed config and from an override's
text, short key names unless two keys share one, and a `study_arm_keys` entry naming no key
refused before anything runs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from forge.config.arm_names import arm_label, arm_of, missing_arm_keys, setting_text
from forge.config.errors import ConfigError
from tests.conftest import compose_config


@pytest.mark.parametrize("typed, text", [(0.0, "0"), (0.5, "0.50"), (1, "1.0"), (1e-5, "1e-5"), (True, "true"),
                                         ("jsd", "jsd"), (None, "null")])
def test_a_value_reads_the_same_typed_or_as_override_text(typed, text):
    assert setting_text(typed) == setting_text(text)


def test_labels_use_the_last_key_part_unless_two_keys_share_it():
    assert arm_label("gkd", [("mode.trainer.lmbda", 0.0), ("mode.trainer.beta", 0.5)]) == "gkd_lmbda0_beta0.5"
    assert arm_label("kd", [("a.seed", 1), ("b.seed", 2), ("alpha", 0.25)]) == "kd_a.seed1_b.seed2_alpha0.25"
    assert arm_label("ce", []) == "ce"


def test_the_arm_of_a_config_dict_or_dictconfig():
    plain = {"loss": {"name": "combined_far"}, "study_arm": None}
    assert arm_of(plain) == "combined_far" and arm_of({"loss": {}}) is None
    swept = OmegaConf.create({"study_arm": "gkd", "study_arm_keys": ["mode.trainer.beta"],
                              "mode": {"trainer": {"beta": 1.0}}, "loss": {"name": "ce"}})
    assert arm_of(swept) == "gkd_beta1" and missing_arm_keys(swept) == []
    assert missing_arm_keys({"study_arm_keys": ["mode.trainer.bta"], "mode": {"trainer": {}}}) == ["mode.trainer.bta"]


def test_an_arm_key_the_config_lacks_is_refused_with_the_fix():
    from forge.plan import build_plan

    with pytest.raises(ConfigError) as err:
        build_plan(compose_config(["experiment=gkd_study", "study_arm_keys=[mode.trainer.lmbda,mode.trainer.bta]"]))
    message = str(err.value)
    assert "study_arm_keys='mode.trainer.bta'" in message and "does not have" in message
    assert "study_arm_keys=[mode.trainer.lmbda,mode.trainer.beta]" in message and "lmbda'" not in message
