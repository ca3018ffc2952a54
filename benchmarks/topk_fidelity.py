"""How far the GKD loss on the teacher's top-k view is from the loss on its dense logits, by k, on
real data: Europarl EN→FR completions, the SmolLM2-135M teacher and its 6-block student (as
`mode=gkd` builds them), the generalized JSD at the mode's β and temperature.

For each k: the loss's relative difference from the dense loss, the cosine between the gradients
the two losses send into the student's logits, and the teacher's probability mass inside its top k
(what a tail bucket would have to carry). The stored view adds float16 rounding on top of a live
top-k view; `tests/integration/test_topk_store_runs.py` bounds that separately.

    python benchmarks/topk_fidelity.py           # ~2 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KS = (1, 5, 20, 50, 100, 500)


def losses_by_k(setup: dict, args: argparse.Namespace) -> dict[int, list[tuple[float, float, float]]]:
    """Per batch and k: (relative loss difference, gradient cosine, teacher mass in the top k)."""
    from forge.decoding.token_logprobs import completion_request
    from forge.losses.divergence import TopKView, generalized_jsd, topk_generalized_jsd
    from forge.teachers.backends.hf import HFTeacherBackend
    from forge.trainers.gkd import student_completion_logits

    data, settings = setup["data"], setup["cfg"].mode.trainer
    beta, temperature = float(settings.beta), float(settings.temperature)
    teacher = HFTeacherBackend(setup["teacher"])
    out: dict[int, list] = {k: [] for k in KS}
    for start in range(0, args.examples, args.batch):
        batch = data.collator([data.train[i] for i in range(start, start + args.batch)])
        prompt, pmask = batch["prompt_input_ids"], batch["prompt_attention_mask"]
        completion, cmask = batch["completion_input_ids"], batch["completion_attention_mask"]
        width, begin = completion.shape[1], prompt.shape[1] - 1
        with torch.no_grad():
            t_logits = teacher.logits(completion_request(prompt, pmask, completion, cmask))[:, begin:begin + width]
            s_logits = student_completion_logits(setup["student"], prompt, pmask, completion, cmask)
        mask = cmask.bool()
        dense_in = s_logits.clone().requires_grad_(True)
        dense = generalized_jsd(dense_in, t_logits, beta=beta, temperature=temperature, mask=mask)
        (dense_grad,) = torch.autograd.grad(dense, dense_in)
        probs = torch.softmax(t_logits.float() / temperature, dim=-1)[mask]
        for k in KS:
            view = TopKView.from_logits(t_logits, k, temperature)
            sparse_in = s_logits.clone().requires_grad_(True)
            sparse = topk_generalized_jsd(sparse_in, view, beta=beta, temperature=temperature, mask=mask)
            (grad,) = torch.autograd.grad(sparse, sparse_in)
            cosine = torch.nn.functional.cosine_similarity(grad[mask].flatten(), dense_grad[mask].flatten(), dim=0)
            mass = probs.topk(k, dim=-1).values.sum(-1).mean()
            loss, reference = sparse.item(), dense.item()
            out[k].append((abs(loss - reference) / reference, cosine.item(), mass.item()))
    return out


def main() -> None:
    from benchmarks.gkd_step_time import DATA, load_setup

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    setup = load_setup(argparse.Namespace(data=args.data, batch=args.batch, warmup=0,
                                          repeats=args.examples // args.batch, top_k=20, new_tokens=32))
    by_k = losses_by_k(setup, args)
    settings = setup["cfg"].mode.trainer
    lines = [f"Top-k GKD loss against the dense teacher (Europarl, {args.examples} completions, SmolLM2-135M → "
             f"6-block student before training, β {settings.beta}, temperature {settings.temperature}; medians over "
             f"batches of {args.batch})", "",
             "| k | loss difference ÷ dense loss | gradient cosine to dense | teacher mass in top k |", "|---|---|---|---|"]
    for k, rows in by_k.items():
        diff, cos, mass = (statistics.median(r[i] for r in rows) for i in range(3))
        lines.append(f"| {k} | {diff:.3f} | {cos:.3f} | {mass:.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
