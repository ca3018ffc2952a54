"""GPTQ / AWQ int4 through llmcompressor, run in its own environment (a script, not a Forge module).

Why a separate process: llmcompressor 0.14 pins transformers<=5.17, Forge runs 5.23; so it lives in
`.venv-quant` (`.ci/install_quant.sh`) and Forge calls this file with that interpreter
(`forge.models.calibrated_quantization`). It imports nothing from Forge. Input: a float model
directory (save_pretrained) and calibration token ids (JSON lines of {"input_ids": [...]}).
Output: the model with its quantized linear layers written unpacked (`save_compressed=False`):
`<layer>.weight` on the int4 grid, `<layer>.weight_scale` and `<layer>.weight_zero_point` per group,
every other tensor as the method left it (AWQ also rescales the norms before each layer).

    python llmcompressor_worker.py --model DIR --calibration FILE.jsonl --out DIR \
        --method gptq|awq --group-size 32 [--ignore lm_head ...]
"""

from __future__ import annotations

import argparse
import json


def _cpu_only_awq_fix() -> None:
    """llmcompressor 0.14's AWQ pins cached activations for faster host-to-GPU copies, and
    `pin_memory` raises on a machine with no accelerator. Pinning is only a transfer optimisation,
    so without CUDA it is skipped; nothing else changes."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.cuda.is_available():
        IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None


class _PreTokenized:
    """Stands in for a tokenizer: the calibration rows arrive as token ids, collated one sequence per
    batch (llmcompressor's default), so nothing is tokenised or padded; oneshot only insists on
    having a processor when it is given a dataset."""

    pad_token_id = None


def _modifier(method: str, group_size: int, ignore: list[str]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    # Symmetric int4 per group, the grid torchao's int4 weight-only config uses in Forge.
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=4, type="int", symmetric=True, strategy="group", group_size=group_size))
    if method == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        return GPTQModifier(config_groups={"int4": scheme}, ignore=ignore)
    from llmcompressor.modifiers.awq import AWQModifier

    return AWQModifier(config_groups={"int4": scheme}, ignore=ignore)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibration", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", choices=("gptq", "awq"), required=True)
    parser.add_argument("--group-size", type=int, required=True)
    parser.add_argument("--ignore", nargs="*", default=["lm_head"])
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    _cpu_only_awq_fix()
    with open(args.calibration, encoding="utf-8") as f:
        rows = [json.loads(line)["input_ids"] for line in f if line.strip()]
    data = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    oneshot(model=model, dataset=data, processor=_PreTokenized(), recipe=[_modifier(args.method, args.group_size, args.ignore)],
            num_calibration_samples=len(rows), max_seq_length=max(len(r) for r in rows))
    model.save_pretrained(args.out, save_compressed=False)


if __name__ == "__main__":
    main()
