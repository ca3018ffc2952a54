"""The same one-run-many-ranks checks on GPUs (NCCL), and FSDP, which accelerate runs only on GPUs.

Marked `gpu`: CI machines have no GPU; run with `pytest -m gpu` on a machine with two.
"""

from __future__ import annotations

import pytest
import torch

from tests.integration.test_multirank import DEMO, assert_one_complete_run, launch, read, step_losses

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")]

KD = [*DEMO, "mode=kd", "loss=combined_far", "teacher_strategy=frozen_sft", "trainer.per_device_train_batch_size=4",
      "teacher_strategy.finetune_batch_size=4"]


def test_fsdp_and_ddp_over_two_gpus_train_the_same_student(tmp_path):
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    launch(2, ddp, [*KD, "distributed=ddp"], tmp_path / "cache")
    launch(2, fsdp, [*KD, "distributed=fsdp", "distributed.fsdp_config.transformer_layer_cls_to_wrap=[BertLayer]"],
           tmp_path / "cache")
    assert_one_complete_run(ddp, steps=4)
    assert read(fsdp, "run_metadata.json")["ranks"] == {"world_size": 2, "strategy": "fsdp"}
    ones, twos = step_losses(ddp), step_losses(fsdp)
    assert sorted(ones) == sorted(twos)
    for step in ones:
        assert twos[step] == pytest.approx(ones[step], rel=1e-3)
    assert (fsdp / "final" / "model.safetensors").is_file()
