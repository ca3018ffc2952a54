"""Benchmark (a): KD step time ÷ SFT step time, same student and batches, live teacher vs cache.

One process, one machine, interleaved: for each loss, the same pre-collated SST-2 batches go
through three training steps in turn (forward, backward, AdamW step) and each variant's median
step time is taken over the timed rounds:

    sft          the student alone on cross-entropy (SDPA attention)
    kd_live      DistillationModule with the frozen teacher's forward pass in every step
    kd_cached    DistillationModule reading the teacher's signals from the teacher cache

Losses: `combined_r` (response KD: what most KD runs are) and `combined_far` (feature + attention +
response; attention maps force eager attention in the student too, which SFT does not pay).
Prints a markdown table with the ratios. Targets (issue 5): kd_cached / sft <= 1.10.

    python benchmarks/kd_step_time.py                       # ~3 min on 2 CPU cores
    python benchmarks/kd_step_time.py --device cuda         # on a GPU machine
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "glue" / "SST-2"


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from forge.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return hydra_compose("config", overrides=overrides)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(loss_name: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    from forge.plan import build_plan
    from forge.data.base import model_inputs
    from forge.models.loading import load_model, load_tokenizer
    from forge.teachers.cache.build import build_entries, example_lengths
    from forge.data.indexing import EXAMPLE_INDEX_KEY, IndexedCollator, IndexedDataset
    from forge.teachers.cache.session import wanted_entries
    from forge.teachers.cache.signals import CachedTeacherSignals
    from forge.teachers.cache.store import SignalStore
    from forge.trainers.distillation import DistillationModule

    cfg = compose(["task=sst2", f"task.data_dir={args.data}", "model=minilm", "mode=kd", f"loss={loss_name}",
                   f"task.max_train_samples={args.examples}", f"task.max_length={args.max_length}", "seed=1"])
    plan = build_plan(cfg)
    plan.loss.bind(plan.student_info, plan.teacher_info)
    tokenizer = load_tokenizer(cfg.model.student)
    data = plan.handler.prepare(tokenizer)
    attn = plan.attn_implementation

    def student(impl: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return load_model(cfg.model.student, kind="classification", num_labels=2, attn_implementation=impl).to(device)

    torch.manual_seed(0)
    teacher = load_model(cfg.model.teacher, kind="classification", num_labels=2, attn_implementation=attn).to(device)
    store = SignalStore(Path(tempfile.mkdtemp(prefix="forge-bench-cache-")))
    store.init("bench", {}, example_lengths(data.train))
    build_entries(store, teacher, data.train, data.collator, wanted_entries(plan.loss, 6), dtype=np.dtype("float16"),
                  device=device)
    signals = CachedTeacherSignals(store, needs=plan.loss.needs, hidden=plan.loss.teacher_layers().hidden or frozenset(),
                                   attentions=plan.loss.teacher_layers().attentions or frozenset(), num_layers=6)

    rng = np.random.default_rng(0)
    indexed, collate = IndexedDataset(data.train), IndexedCollator(data.collator)
    batches = [collate([indexed[int(i)] for i in rng.choice(len(data.train), args.batch, replace=False)])
               for _ in range(args.steps)]
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    sft = student("sdpa")
    kd_live = DistillationModule(student(attn), teacher, plan.loss, alpha=0.5, teacher_trainable=False).to(device)
    kd_cached = DistillationModule(student(attn), None, plan.loss, alpha=0.5, teacher_trainable=False,
                                   teacher_signals=signals).to(device)

    def sft_step(batch):
        return sft(**model_inputs(batch)).loss

    def kd_step(module):
        return lambda batch: module(example_index=batch[EXAMPLE_INDEX_KEY], **model_inputs(batch))["loss"]

    variants = {"sft": (sft, sft_step), "kd_live": (kd_live, kd_step(kd_live)),
                "kd_cached": (kd_cached, kd_step(kd_cached))}
    optims = {name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
              for name, (m, _) in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step, batch in enumerate(batches):
        for name, (module, fn) in variants.items():  # interleaved: drift hits every variant alike
            module.train()
            _sync(device)
            t0 = time.perf_counter()
            loss = fn(batch)
            loss.backward()
            optims[name].step()
            optims[name].zero_grad(set_to_none=True)
            _sync(device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"loss": loss_name, **{f"{k}_ms": 1000 * v for k, v in med.items()},
            "live_ratio": med["kd_live"] / med["sft"], "cached_ratio": med["kd_cached"] / med["sft"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--losses", default="combined_r,combined_far")
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(name, args, device) for name in args.losses.split(",")]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nKD step time / SFT step time ({where}; MiniLM-L6 -> L3, batch {args.batch}, max_length "
          f"{args.max_length}, median of {args.steps - args.warmup} interleaved steps)\n")
    print("| loss | SFT ms | KD live ms | KD cached ms | live / SFT | cached / SFT |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['loss']} | {r['sft_ms']:.1f} | {r['kd_live_ms']:.1f} | {r['kd_cached_ms']:.1f} | "
              f"{r['live_ratio']:.2f} | {r['cached_ratio']:.2f} |")


if __name__ == "__main__":
    main()
