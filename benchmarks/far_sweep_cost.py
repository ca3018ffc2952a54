"""Benchmarks (b) and (c): what the 8-arm FAR study costs over plain fine-tuning, with the cache.

Real processes through `launch.py`, one machine, one invocation of this script:

  1. sft      one SFT run of the student (mode=sft) with the study's budget;
  2. sweep    `launch.py -m experiment=far_study` with one seed: 8 arms (ce, F, A, R, FA, FR, AR,
              FAR) into a fresh teacher cache: the teacher is fine-tuned once, each signal is
              computed once, every arm reads it;
  3. kd       one combined_far run reading the (now warm) cache, and one with teacher.cache=off.

(b) = sweep wall time / (8 x SFT wall time). Hydra's local launcher runs a sweep's jobs in one
    process, so the sweep pays interpreter start-up once; the second figure compares the summed
    run durations (run_metadata.json, start-up excluded on both sides) instead.
(c) = peak resident memory (ru_maxrss of the process) of the KD run with the cache / of SFT.

    python benchmarks/far_sweep_cost.py             # ~8 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "glue" / "SST-2"


def budget(args: argparse.Namespace) -> list[str]:
    return [f"task.data_dir={args.data}", f"task.max_train_samples={args.examples}", "task.max_eval_samples=null",
            f"trainer.max_steps={args.steps}", f"trainer.eval_steps={args.eval_steps}",
            f"trainer.save_steps={args.steps}", f"teacher_strategy.finetune_steps={args.teacher_steps}",
            "logger=none", "seed=1"]


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one launch.py process (os.wait4: that child's own rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stdout.write(output.decode(errors="replace")[-4000:])
        raise SystemExit(f"launch.py {' '.join(argv)} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss // 1024


def durations(root: Path) -> list[float]:
    return [json.loads(p.read_text())["duration_s"] for p in root.rglob("run_metadata.json")]


def main() -> None:
    from benchmarks.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--teacher-steps", type=int, default=90)
    parser.add_argument("--out", default=None, help="work directory (default: a fresh temporary one)")
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="forge-far-cost-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "FORGE_TEACHER_CACHE_DIR": str(work / "teacher_cache")}
    common = ["experiment=far_study", *budget(args)]

    sft_wall, sft_rss = run([*common, "mode=sft", "alpha=0.0", "loss=ce", f"run_dir={work / 'sft'}"], env)
    sweep_wall, _ = run(["-m", *common, f"output_root={work / 'sweep'}"], env)
    kd_wall, kd_rss = run([*common, "loss=combined_far", f"run_dir={work / 'kd_cached'}"], env)
    live_wall, live_rss = run([*common, "loss=combined_far", "teacher.cache=off", f"run_dir={work / 'kd_live'}"], env)

    sft_duration = durations(work / "sft")[0]
    arm_durations = durations(work / "sweep")
    if len(arm_durations) != 8:
        raise SystemExit(f"expected 8 finished arms, found {len(arm_durations)} under {work / 'sweep'}")
    cache_size = sum(f.stat().st_size for f in (work / "teacher_cache").rglob("*") if f.is_file())
    lines = [
        f"FAR study cost ({os.cpu_count()} CPU cores; SST-2 {args.examples} training examples, full dev set, "
        f"{args.steps} steps, eval every {args.eval_steps}, teacher fine-tuned {args.teacher_steps} steps)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| SFT run: wall s / peak RSS MiB | {sft_wall:.1f} / {sft_rss} |",
        f"| 8-arm sweep (shared cache, cold): wall s | {sweep_wall:.1f} |",
        f"| (b) sweep wall / (8 x SFT wall) | **{sweep_wall / (8 * sft_wall):.2f}** |",
        f"| (b') sum of arm durations / (8 x SFT duration) | {sum(arm_durations) / (8 * sft_duration):.2f} |",
        f"| KD combined_far, warm cache: wall s / peak RSS MiB | {kd_wall:.1f} / {kd_rss} |",
        f"| KD combined_far, live teacher: wall s / peak RSS MiB | {live_wall:.1f} / {live_rss} |",
        f"| (c) peak RSS KD cached / SFT | **{kd_rss / sft_rss:.2f}** |",
        f"| peak RSS KD live / SFT | {live_rss / sft_rss:.2f} |",
        f"| teacher cache on disk (teacher + signals + scores) | {cache_size / 2**20:.1f} MiB |",
    ]
    write_results(work, "\n".join(lines))
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
