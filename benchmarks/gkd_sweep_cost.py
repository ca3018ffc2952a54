"""Benchmark: what a β sweep of off-policy GKD costs over plain fine-tuning, with and without the
teacher's stored top-k view (issue 17's sweep economics, by `far_sweep_cost.py`'s method).

Real `launch.py` processes on Europarl EN→FR with the SmolLM2 pair, one machine:

  1. sft     one SFT run of the student with the sweep's budget;
  2. store   `launch.py -m` over 4 β arms × 2 seeds of GKD (λ 0, top-k view) into a fresh cache: the
             first run fills the top-k store with one teacher pass, the other seven read it;
  3. live    the same 8 runs with teacher.cache=off: the teacher scores every batch of every run.

Reported: each sweep's wall ÷ (8 × SFT wall), the same with the runs' own durations (interpreter
start-up excluded), and the teacher passes the store paid (its manifest's build records).

    python benchmarks/gkd_sweep_cost.py      # ~25 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "europarl"
BETAS = "0.0,0.3,0.7,1.0"
SEEDS = "1,2"


def budget(args: argparse.Namespace) -> list[str]:
    return ["task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "logger=none",
            f"task.max_train_samples={args.examples}", f"task.max_eval_samples={args.eval}", "task.max_new_tokens=16",
            f"trainer.max_steps={args.steps}", "trainer.per_device_train_batch_size=4", "trainer.eval_steps=0",
            f"trainer.save_steps={args.steps}", "trainer.learning_rate=1e-4",
            "task.seed=0"]  # one training subset for every seed, as experiment=far_study fixes it


def main() -> None:
    from benchmarks.far_sweep_cost import durations, run
    from benchmarks.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--eval", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16, help="per run (16 × batch 4 = one pass over 64 examples)")
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--out", default=None, help="work directory (default: a fresh temporary one)")
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="forge-gkd-sweep-cost-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "FORGE_TEACHER_CACHE_DIR": str(work / "teacher_cache")}
    gkd = ["mode=gkd", "mode.trainer.lmbda=0.0", f"mode.trainer.top_k={args.top_k}",
           f"mode.trainer.beta={BETAS}", f"seed={SEEDS}"]

    sft_wall, _ = run([*budget(args), "mode=sft", f"run_dir={work / 'sft'}"], env)
    store_wall, _ = run(["-m", *budget(args), *gkd, f"output_root={work / 'store'}"], env)
    live_wall, _ = run(["-m", *budget(args), *gkd, "teacher.cache=off", f"output_root={work / 'live'}"], env)

    sft_duration = durations(work / "sft")[0]
    store_runs, live_runs = durations(work / "store"), durations(work / "live")
    if len(store_runs) != 8 or len(live_runs) != 8:
        raise SystemExit(f"expected 8 finished runs per sweep, found {len(store_runs)} and {len(live_runs)}")
    records = [json.loads(m.read_text()) for m in (work / "teacher_cache" / "signals").glob("*/manifest.json")]
    builds = [b for record in records for b in record["builds"]]
    build_s = sum(b["seconds"] for b in builds)
    size = sum(e["bytes"] for record in records for e in record["entries"].values())
    lines = [
        f"GKD β sweep cost ({os.cpu_count()} CPU cores; Europarl, SmolLM2-135M teacher → 6-block student, "
        f"{args.examples} training examples, {args.steps} steps of batch 4 per run, λ 0, top-{args.top_k}; "
        f"4 β arms ({BETAS}) × 2 seeds)", "",
        "| measure | value |", "|---|---|",
        f"| one SFT run: wall s | {sft_wall:.1f} |",
        f"| 8 runs reading the top-k store: wall s / ÷ (8 × SFT wall) | {store_wall:.1f} / "
        f"**{store_wall / (8 * sft_wall):.2f}** |",
        f"| 8 runs with the live teacher: wall s / ÷ (8 × SFT wall) | {live_wall:.1f} / "
        f"**{live_wall / (8 * sft_wall):.2f}** |",
        f"| Σ run durations ÷ (8 × SFT duration): store / live | {sum(store_runs) / (8 * sft_duration):.2f} / "
        f"{sum(live_runs) / (8 * sft_duration):.2f} |",
        f"| teacher passes over the data: store / live | {len(builds)} ({build_s:.1f} s) / 8 (one per run) |",
        f"| store on disk | {size / 2**10:.1f} KiB for {args.examples} examples |",
    ]
    write_results(work, "\n".join(lines))
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
