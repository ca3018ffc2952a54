"""GPTQ and AWQ int4 post-training quantization of the student (`int4_gptq`, `int4_awq`).

Both need calibration inputs: the layer-by-layer error they minimise (GPTQ) or the activation scales
they protect (AWQ) are measured on real inputs. Forge passes token ids: `calibration_file` (one text
per line) tokenised by the student's tokenizer, or by default a seeded sample of the task's
tokenised training split, exactly what the student trains on.

The algorithms come from llmcompressor (vLLM's quantization library), which runs on CPU but pins an
older transformers than Forge's, so it runs as a subprocess in its own environment (`.venv-quant`,
`.ci/install_quant.sh`; the interpreter is `model.student.quantization.python`). The subprocess
writes the quantized model unpacked (weights on the int4 grid plus a scale and zero point per
group); `_int4_model` turns it into the same torchao int4 layers `int4_rtn`/`int4_qat` produce, so
final/, `load_final` and the scores are identical in form for every method.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import torch

from forge.config.errors import ConfigProblem
from forge.models.quantization import HEAD_NAMES, Int4RTN, quantizable_linears

log = logging.getLogger("forge")

WORKER = Path(__file__).with_name("llmcompressor_worker.py")
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-quant" / "bin" / "python"
INSTALL = "bash .ci/install_quant.sh"


class QuantizationFailed(RuntimeError):
    """The quantization subprocess failed; the message carries the end of its output."""


@dataclass(frozen=True)
class Int4Calibrated(Int4RTN):
    """Post-training int4 by a calibrated method (`method`: gptq | awq, set by the subclass), run
    through llmcompressor in its own environment. Nothing happens during training (prepare is the
    identity); `convert` needs the calibration token ids (`calibration_samples` of them, at most
    `calibration_max_length` tokens each)."""

    needs_calibration: ClassVar[bool] = True
    name: str = "int4_calibrated"
    method: str = "gptq"
    calibration_samples: int = 64
    calibration_max_length: int = 256
    calibration_file: Optional[str] = None
    python: Optional[str] = None

    def recipe(self) -> dict[str, Any]:
        return {**super().recipe(), "calibration_samples": self.calibration_samples,
                "calibration_max_length": self.calibration_max_length,
                "calibration": self.calibration_file or "the task's training split"}

    def interpreter(self) -> Path:
        return Path(self.python) if self.python else DEFAULT_PYTHON

    def problems(self, model: torch.nn.Module, key: str = "model.student.quantization") -> list[ConfigProblem]:
        problems = super().problems(model, key)
        if self.scheme != "int4_weight_only":
            problems.append(ConfigProblem(f"{key}.scheme", f"{self.method} quantizes weights only.", self.scheme,
                                          "use scheme=int4_weight_only"))
        if not getattr(model, "can_generate", lambda: False)():
            problems.append(ConfigProblem(key, f"{self.method} runs here on decoder language models only.",
                                          type(model).__name__, "use int4_rtn for this model"))
        problems.extend(self._calibration_problems(key))
        if not self.interpreter().is_file():
            problems.append(ConfigProblem(f"{key}.python", f"names no Python: {self.method} runs in its own "
                                          "environment (llmcompressor pins another transformers).",
                                          str(self.interpreter()), f"run `{INSTALL}` (or set {key}.python)"))
        return problems

    def _calibration_problems(self, key: str) -> list[ConfigProblem]:
        fix = f"{key}.calibration_file=null uses the task's training split"
        if self.calibration_samples < 1:
            return [ConfigProblem(f"{key}.calibration_samples", f"{self.method} needs calibration data; "
                                  "0 samples gives it none.", self.calibration_samples, "use 16 or more")]
        if self.calibration_file is None:
            return []
        path = Path(self.calibration_file)
        if not path.is_file():
            return [ConfigProblem(f"{key}.calibration_file", "does not exist.", str(path), fix)]
        if not any(line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()):
            return [ConfigProblem(f"{key}.calibration_file", f"holds no text: {self.method} needs calibration "
                                  "data (one text per line).", str(path), fix)]
        return []

    def calibration_texts(self) -> Optional[list[str]]:
        """The calibration file's texts (None: calibrate on the task's training split)."""
        if self.calibration_file is None:
            return None
        lines = Path(self.calibration_file).read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line.strip()][: self.calibration_samples]

    def convert(self, model: torch.nn.Module, calibration: Optional[Sequence[Sequence[int]]] = None) -> torch.nn.Module:
        if not calibration:
            raise ValueError(f"{self.name}: convert needs calibration token ids (none were given)")
        with tempfile.TemporaryDirectory(prefix="forge-quant-") as tmp:
            source, out, ids = Path(tmp) / "float", Path(tmp) / "quantized", Path(tmp) / "calibration.jsonl"
            model.save_pretrained(str(source), safe_serialization=True)
            ids.write_text("".join(json.dumps({"input_ids": [int(t) for t in row]}) + "\n" for row in calibration))
            self._run_worker(source, ids, out)
            return _int4_model(model, _read_state(out), self)

    def _run_worker(self, source: Path, ids: Path, out: Path) -> None:
        command = [str(self.interpreter()), str(WORKER), "--model", str(source), "--calibration", str(ids),
                   "--out", str(out), "--method", self.method, "--group-size", str(self.group_size),
                   "--ignore", *[f"re:.*{head}$" for head in HEAD_NAMES]]
        log.info("%s: llmcompressor on %s calibration sequences (%s)", self.method.upper(),
                 sum(1 for _ in ids.open()), self.interpreter())
        env = {**os.environ, "PYTHONPATH": ""}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise QuantizationFailed(f"{self.method} (llmcompressor) failed with exit code {done.returncode}:\n{tail}")


@dataclass(frozen=True)
class Int4GPTQ(Int4Calibrated):
    """`int4_gptq`: GPTQ (column-by-column rounding that corrects the remaining columns for the error
    made, using the calibration inputs' Hessian)."""

    name: str = "int4_gptq"
    method: str = "gptq"


@dataclass(frozen=True)
class Int4AWQ(Int4Calibrated):
    """`int4_awq`: AWQ (per-channel scales searched on calibration activations protect the weights
    that matter most, then round to nearest)."""

    name: str = "int4_awq"
    method: str = "awq"


def _read_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    if not state:
        raise QuantizationFailed(f"the quantization subprocess wrote no weights in {directory}")
    return state


def _int4_model(model: torch.nn.Module, state: dict[str, torch.Tensor], quantizer: Int4Calibrated) -> torch.nn.Module:
    """`model`, changed in place, with the subprocess's weights: the float tensors it changed (AWQ's
    rescaled norms) loaded, and each quantized linear layer's weight the torchao int4 tensor of its
    levels, scales and zero points (`final_form` hands in a copy)."""
    from forge.models.int4_checkpoint import int4_weight

    scales = {k[: -len(".weight_scale")] for k in state if k.endswith(".weight_scale")}
    chosen = {name for name, _ in quantizable_linears(model)}
    if scales != chosen:
        raise QuantizationFailed(f"{quantizer.method} quantized {len(scales)} layers, Forge expects {len(chosen)} "
                                 f"(differ: {sorted(scales ^ chosen)[:4]})")
    floats = {k: v for k, v in state.items() if not k.endswith((".weight_scale", ".weight_zero_point"))
              and k[: -len(".weight")] not in chosen}
    _, unexpected = model.load_state_dict(floats, strict=False)
    if unexpected:
        raise QuantizationFailed(f"{quantizer.method} wrote tensors the model lacks: {unexpected[:4]}")
    for name in sorted(chosen):
        weight, scale = state[f"{name}.weight"], state[f"{name}.weight_scale"].to(torch.float32)
        zero = state[f"{name}.weight_zero_point"].to(torch.int8)
        grouped = weight.reshape(weight.shape[0], -1, quantizer.group_size) / scale.unsqueeze(-1)
        levels = (grouped.round() + zero.unsqueeze(-1)).clamp(-8, 7).to(torch.int8).reshape(weight.shape)
        int4 = int4_weight(levels, scale, zero, (1, quantizer.group_size))
        model.get_submodule(name).weight = torch.nn.Parameter(int4, requires_grad=False)
    return model


def calibration_ids(train: Any, collate: Any, samples: int, max_length: int, seed: int,
                    texts: Optional[list[str]] = None, tokenizer: Any = None) -> list[list[int]]:
    """The calibration token ids: `texts` tokenised, or else a seeded sample of the training split,
    each example put through the task's training collator alone (so the ids are exactly what the
    student trains on: prompt and target, whatever the task's columns), cut to `max_length`."""
    if texts is not None:
        return [tokenizer(text, truncation=True, max_length=max_length)["input_ids"] for text in texts]
    if train is None or len(train) == 0:
        raise ValueError("no calibration data: the task's training split is empty; set calibration_file")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()[:samples]
    rows = []
    for i in order:
        batch = collate([train[i]])
        ids = batch["input_ids"][0]
        mask = batch.get("attention_mask")
        kept = ids[mask[0].bool()] if mask is not None else ids
        rows.append([int(t) for t in kept][:max_length])
    return rows
