"""How far the GKD loss on the teacher's top-k view is from the loss on its dense logits, by k, on
real data: Europarl EN→FR completions, the SmolLM2-135M teacher and its 6-block student (as
`mode=gkd` builds them), the generalized JSD at the mode's β and temperature.

For each k: the loss's relative difference from the dense loss, the cosine between the gradients
the two losses send into the student's logits, and the teacher's probability mass inside its top k
(what a tail bucket would have to carry); then at temperature 1, where the tail bucket is
defined, the same two differences without and with it (`mode.trainer.tail_bucket`). The stored
view adds float16 rounding on top of a live top-k view; `tests/integration/test_topk_store_runs.py` bounds that separately.

    python benchmarks/topk_fidelity.py           # ~2 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KS = (1, 5, 20, 50, 100, 500)


Row = tuple[float, ...]


def against_dense(s_logits: torch.Tensor, dense_loss: Callable, sparse_loss: Callable) -> tuple[float, float]:
    """(|sparse − dense| ÷ dense, cosine between the gradients the two send into the student's logits)."""
    grads, values = [], []
    for loss_of in (dense_loss, sparse_loss):
        logits = s_logits.clone().requires_grad_(True)
        loss = loss_of(logits)
        grads.append(torch.autograd.grad(loss, logits)[0].flatten())
        values.append(loss.item())
    cosine = torch.nn.functional.cosine_similarity(grads[1], grads[0], dim=0).item()
    return abs(values[1] - values[0]) / values[0], cosine


def batch_rows(t_logits: torch.Tensor, s_logits: torch.Tensor, mask: torch.Tensor, beta: float,
               temperature: float) -> dict[int, Row]:
    """Per k: at the mode's temperature, the top-k loss against the dense one and the teacher's mass
    in its top k; at temperature 1 (where the tail bucket is defined), top-k without and with it."""
    from forge.losses.divergence import TopKView, generalized_jsd, topk_generalized_jsd

    def dense_at(t: float) -> Callable:
        return lambda logits: generalized_jsd(logits, t_logits, beta=beta, temperature=t, mask=mask)

    def sparse_at(view: TopKView, t: float, tail: bool = False) -> Callable:
        return lambda logits: topk_generalized_jsd(logits, view, beta=beta, temperature=t, mask=mask, tail_bucket=tail)

    probs = torch.softmax(t_logits.float() / temperature, dim=-1)[mask]
    rows = {}
    for k in KS:
        mass = probs.topk(k, dim=-1).values.sum(-1).mean().item()
        at_mode = against_dense(s_logits, dense_at(temperature), sparse_at(TopKView.from_logits(t_logits, k, temperature),
                                                                         temperature))
        view_1 = TopKView.from_logits(t_logits, k, 1.0)
        plain_1 = against_dense(s_logits, dense_at(1.0), sparse_at(view_1, 1.0))
        tail_1 = against_dense(s_logits, dense_at(1.0), sparse_at(view_1, 1.0, tail=True))
        rows[k] = (*at_mode, mass, *plain_1, *tail_1)
    return rows


def losses_by_k(setup: dict, args: argparse.Namespace) -> dict[int, list[Row]]:
    """Per batch and k: `batch_rows`' numbers."""
    from forge.decoding.token_logprobs import completion_request
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
        for k, row in batch_rows(t_logits, s_logits, cmask.bool(), beta, temperature).items():
            out[k].append(row)
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
             f"6-block student before training, β {settings.beta}; medians over batches of {args.batch})", "",
             f"| k | at T {settings.temperature}: loss difference ÷ dense loss | gradient cosine to dense | teacher "
             "mass in top k | at T 1: loss difference ÷ dense | gradient cosine | with the tail bucket: loss "
             "difference ÷ dense | gradient cosine |", "|---|---|---|---|---|---|---|---|"]
    for k, rows in by_k.items():
        medians = [statistics.median(r[i] for r in rows) for i in range(len(rows[0]))]
        lines.append(f"| {k} | " + " | ".join(f"{m:.3f}" for m in medians) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
