"""`python -m forge.workbench` on real tiny run directories made here: a KD run (frozen fine-tuned
teacher, FAR loss) and a plain SFT run. The workbench must see the very models the runs scored:
with every eval example read, the students' and the teacher's own-head accuracy equal the runs'
metrics.json, and the CKA map is the run's training layer map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import compose_config

pytestmark = pytest.mark.integration

RUN = ["task=demo", "model=minilm", "logger=none", "task.max_train_samples=48", "task.max_eval_samples=40",
       "task.max_length=32", "trainer.max_steps=3", "trainer.per_device_train_batch_size=8",
       "trainer.per_device_eval_batch_size=16", "teacher_strategy.finetune_steps=3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    import forge

    root = tmp_path_factory.mktemp("workbench")
    dirs = {"kd": root / "kd", "sft": root / "sft", "kd_r": root / "kd_r"}
    forge.run(compose_config([*RUN, "mode=kd", "loss=combined_far", f"run_dir={dirs['kd']}"]))
    forge.run(compose_config([*RUN, "mode=kd", "loss=combined_r", f"run_dir={dirs['kd_r']}"]))
    forge.run(compose_config([*RUN, "mode=sft", f"run_dir={dirs['sft']}"]))
    return dirs


def test_the_workbench_against_plain_sft_reads_the_models_the_runs_scored(runs):
    from forge.losses.layer_map import layer_pairs
    from forge.workbench.__main__ import main

    assert main([str(runs["kd"]), "--against", str(runs["sft"]), "--head-steps", "30"]) == 0
    out = runs["kd"] / "workbench"
    result = json.loads((out / "workbench.json").read_text())
    assert (out / "workbench.md").is_file() and (out / "probe_curves.png").is_file() and (out / "cka_heatmap.png").is_file()
    post = {name: json.loads((runs[name] / "metrics.json").read_text())["post"] for name in ("kd", "sft")}
    own = {name: row["own_head"] for name, row in result["head"]["scores"].items()}
    assert own["student"] == pytest.approx(post["kd"]["student"]["validation/accuracy"])
    assert own["against"] == pytest.approx(post["sft"]["student"]["validation/accuracy"])
    assert own["teacher"] == pytest.approx(post["kd"]["teacher"]["validation/accuracy"])
    cka = result["cka"]
    matrix = cka["matrix"]["student"]
    assert len(matrix) == 7 and len(matrix[0]) == 4  # teacher 6 blocks + embeddings, student 3 + embeddings
    assert cka["layer_map"] == [list(p) for p in layer_pairs(None, 3, 6)] and "loss.feature" in cka["map_source"]
    assert {len(rows) for rows in result["probe"]["curves"].values()} == {4, 7}
    dis = result["disagreement"]["student"]
    assert dis["count"] == 40 and sum(map(sum, dis["confusion_teacher_x_student"])) == 40
    off_diagonal = sum(c for t, row in enumerate(dis["confusion_teacher_x_student"]) for s, c in enumerate(row) if s != t)
    assert dis["disagreements"] == off_diagonal
    assert set(result["head"]["diagnosis"]) == {"student", "against"}


def test_an_sft_run_alone_has_probes_but_no_teacher_to_align_with(runs, tmp_path):
    from forge.workbench.__main__ import main

    assert main([str(runs["sft"]), "--analyses", "probe,cka", "--out", str(tmp_path / "wb")]) == 0
    result = json.loads((tmp_path / "wb" / "workbench.json").read_text())
    assert list(result["probe"]["curves"]) == ["student"] and "no teacher" in result["cka"]["skipped"]


def test_the_sweep_form_analyses_every_run_and_computes_the_common_teacher_once(runs, monkeypatch):
    import forge.workbench.subjects as subjects
    from forge.workbench.__main__ import main

    calls: list[int] = []
    real_extract = subjects.extract
    monkeypatch.setattr(subjects, "extract", lambda model, *a, **k: calls.append(id(model)) or real_extract(model, *a, **k))
    root = runs["kd"].parent
    assert main([str(root), "--redo", "--analyses", "probe,cka", "--max-train", "32"]) == 0
    results = {name: json.loads((runs[name] / "workbench" / "workbench.json").read_text()) for name in runs}
    assert results["kd"]["probe"]["curves"]["teacher"] == results["kd_r"]["probe"]["curves"]["teacher"]
    # each KD run: its student on train and eval, its initial student on eval (CKA); the SFT run: its
    # student (no teacher, so no CKA); the common teacher on train and eval once, not once per run
    assert len(calls) == 2 * (2 + 1) + 2 + 2
    view = json.loads((root / "workbench_sweep.json").read_text())
    assert {arm["arm"] for arm in view["arms"]} == {"ce", "combined_far", "combined_r"}
    assert (root / "workbench_sweep.md").is_file()


def test_per_token_cka_where_teacher_and_student_share_a_tokenizer(runs, tmp_path):
    """pooling=tokens: one row per real token. The MiniLM pair shares bert-base-uncased's vocabulary,
    so both read the same token rows and CKA compares them; probes (one label per example) say why not."""
    from forge.workbench.__main__ import main

    out = tmp_path / "tokens"
    assert main([str(runs["kd"]), "--pooling", "tokens", "--analyses", "probe,cka", "--out", str(out)]) == 0
    result = json.loads((out / "workbench.json").read_text())
    assert "one label per example" in result["probe"]["skipped"]
    assert main([str(runs["kd"]), "--analyses", "cka", "--out", str(tmp_path / "cls")]) == 0
    pooled = json.loads((tmp_path / "cls" / "workbench.json").read_text())["cka"]
    assert len(result["cka"]["matrix"]["student"]) == 7 and result["cka"]["layer_map"] == pooled["layer_map"]
    assert result["cka"]["matrix"]["student"] != pooled["matrix"]["student"]  # token rows, not [CLS] rows


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    from forge.workbench.__main__ import main

    assert main([str(runs["kd"]), "--analyses", "probe,clustering"]) == 2
    assert "unknown analysis ['clustering']; valid: probe, cka, disagreement, head" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 2
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text((runs["sft"] / "config.yaml").read_text())
    assert main([str(tmp_path / "half")]) == 2
    assert "has no final/" in capsys.readouterr().err
    assert not (tmp_path / "half" / "workbench" / "workbench.json").exists()


@pytest.mark.slow  # the 30-layer SmolLM2 teacher's features and greedy translations: minutes on 2 cores
def test_the_workbench_on_a_decoder_run_probes_target_length_and_compares_translations(tmp_path):
    """Europarl EN→FR with the SmolLM2 pair: features at the prompt's last token, the probe's label
    the target's length bucket, CKA over the 30 teacher × 6 student blocks, chrF of student vs
    teacher translations; a decoder has no task head to re-train, which the report says."""
    import forge
    from forge.workbench.__main__ import main
    from tests.integration.test_decoder_runs import DECODER_TINY

    run_dir = tmp_path / "run"
    forge.run(compose_config([*DECODER_TINY, "task.max_train_samples=24", "task.max_eval_samples=6", "mode=kd",
                              "loss=combined_f", "teacher_strategy=frozen_base", f"run_dir={run_dir}"]))
    assert main([str(run_dir)]) == 0
    result = json.loads((run_dir / "workbench" / "workbench.json").read_text())
    assert result["pooling"] == "last" and "length bucket" in result["probe"]["label"]
    assert [len(result["probe"]["curves"][m]) for m in ("student", "teacher")] == [7, 31]
    matrix = result["cka"]["matrix"]["student"]
    assert len(matrix) == 31 and len(matrix[0]) == 7 and "loss.feature" in result["cka"]["map_source"]
    chrf = result["disagreement"]["student"]
    assert result["disagreement"]["examples"] == 6 and 0.0 <= chrf["mean_chrf_vs_teacher"] <= 100.0
    assert all(w["chrf"] >= chrf["worst"][0]["chrf"] for w in chrf["worst"])
    assert "LM head" in result["head"]["skipped"]


def test_the_workbench_reads_a_vision_language_models_language_layers(tmp_path):
    """The image path: a KD run on synthetic pages (tiny Qwen3-VL pair) is read at its page prompt,
    pixels included, through the language model's layers (2 student blocks, 4 teacher blocks)."""
    import forge
    from forge.workbench.__main__ import main
    from tests.integration.test_vlm_runs import VLM_TINY

    run_dir = tmp_path / "run"
    forge.run(compose_config([*VLM_TINY, "task.num_train=12", "task.num_validation=4", "task.max_length=1024",
                              "mode=kd", "loss=combined_f",
                              "teacher_strategy=frozen_base", f"run_dir={run_dir}"]))
    assert main([str(run_dir), "--analyses", "probe,cka,disagreement"]) == 0
    result = json.loads((run_dir / "workbench" / "workbench.json").read_text())
    assert [len(result["probe"]["curves"][m]) for m in ("student", "teacher")] == [3, 5]
    assert len(result["cka"]["matrix"]["student"]) == 5 and len(result["cka"]["matrix"]["student"][0]) == 3
    assert result["disagreement"]["examples"] == 4
    assert result["probe"]["curves"]["student"][0]["control_accuracy"] is None  # every page prompt: the same ids
