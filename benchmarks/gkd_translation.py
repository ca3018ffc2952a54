"""Benchmark: SFT vs KD vs GKD (off- and on-policy) on Europarl EN→FR, offline SmolLM2 pair.

GKD's own recipe (Agarwal et al., 2023): distil into a student that was first fine-tuned on the
task. So the script runs, through `launch.py` (real runs, real run directories):

  1. teacher   mode=sft on SmolLM2-135M-Instruct itself (30 layers): the Europarl teacher;
  2. warmup    mode=sft on the 6-layer student (every 6th block + the last; model=smollm2);
  3. four arms from that warm student with the same step budget, batch and learning rate:
       sft             mode=sft (cross-entropy on the references)
       kd_forward_kl   mode=kd loss=response_kl (T=1), alpha 0.5
       gkd_off_policy  mode=gkd lmbda=0 (dataset completions), beta 0.5
       gkd_on_policy   mode=gkd lmbda=1 (student samples), beta 0.5
     every distilling arm loads the same teacher (`teacher_strategy.checkpoint`).

Every score is sacrebleu BLEU / chrF of greedy translations of the same seeded held-out sentences.
Prints one markdown table and writes it with the raw numbers to `<out>/results.{md,json}`.

    python benchmarks/gkd_translation.py             # ~45 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "europarl"
ARMS = ("sft", "kd_forward_kl", "gkd_off_policy", "gkd_on_policy")


def common(args: argparse.Namespace) -> list[str]:
    return [
        "task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "logger=none",
        f"task.max_eval_samples={args.eval}", f"task.max_length={args.max_length}",
        f"task.max_new_tokens={args.max_new_tokens}", "task.system_prompt=You translate English to French.",
        f"trainer.per_device_train_batch_size={args.batch}", "trainer.per_device_eval_batch_size=40",
        "trainer.logging_steps=10", "trainer.save_steps=0", f"seed={args.seed}",
    ]


def stages(args: argparse.Namespace, out: Path) -> dict[str, list[str]]:
    teacher_dir, warm_dir = out / "teacher" / "final", out / "warmup" / "final"
    from_warm = ["model.student.source=local", f"model.student.name_or_path={warm_dir}",
                 "model.student.init_layers=null", f"trainer.max_steps={args.steps}",
                 f"trainer.learning_rate={args.lr}"]
    teacher = ["teacher_strategy=frozen_sft", f"teacher_strategy.checkpoint={teacher_dir}"]
    gkd = ["mode=gkd", *teacher, "mode.trainer.beta=0.5", "mode.trainer.temperature=1.0",
           f"mode.trainer.max_new_tokens={args.max_new_tokens}"]
    return {
        "teacher": ["mode=sft", "model.student.init_layers=null", f"trainer.max_steps={args.teacher_steps}",
                    f"trainer.learning_rate={args.teacher_lr}"],
        "warmup": ["mode=sft", f"trainer.max_steps={args.warmup_steps}", f"trainer.learning_rate={args.warmup_lr}"],
        "sft": ["mode=sft", *from_warm],
        "kd_forward_kl": ["mode=kd", "loss=response_kl", "loss.temperature=1.0", "alpha=0.5", *teacher, *from_warm],
        "gkd_off_policy": [*gkd, "mode.trainer.lmbda=0.0", *from_warm],
        "gkd_on_policy": [*gkd, "mode.trainer.lmbda=1.0", *from_warm],
    }


def run_stage(name: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    run_dir = out / name
    cmd = [sys.executable, str(REPO / "launch.py"), *overrides, f"run_dir={run_dir}"]
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    with open(out / f"{name}.stdout.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads((run_dir / "metrics.json").read_text()), time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "gkd_translation")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--teacher-steps", type=int, default=200)
    parser.add_argument("--teacher-lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--warmup-lr", type=float, default=5e-4)
    parser.add_argument("--steps", type=int, default=50, help="steps of each compared arm")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval", type=int, default=80)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    for name, extra in stages(args, args.out).items():
        metrics, elapsed = run_stage(name, [*common(args), *extra], args.out)
        results[name] = {"metrics": metrics, "wall_s": round(elapsed, 1)}
        print(f"[{name}] done in {elapsed:.0f} s: {metrics['post']['student']}", flush=True)

    def row(label: str, scores: dict, wall: str = "") -> str:
        return f"| {label} | {scores['validation/bleu']:.2f} | {scores['validation/chrf']:.2f} | {wall} |"

    teacher, warm = results["teacher"]["metrics"], results["warmup"]["metrics"]
    lines = [
        f"Europarl EN→FR, {args.eval} held-out sentences, greedy ≤{args.max_new_tokens} new tokens, batch "
        f"{args.batch}, seed {args.seed}. Student: 6 of SmolLM2-135M-Instruct's 30 blocks, {args.warmup_steps} "
        f"SFT warm-up steps, then {args.steps} steps per arm at lr {args.lr}.",
        "",
        "| model | BLEU | chrF | wall (s) |",
        "|---|---|---|---|",
        row("teacher before fine-tuning (SmolLM2-135M-Instruct)", teacher["pre"]["student"]),
        row(f"teacher after {args.teacher_steps} SFT steps", teacher["post"]["student"], f"{results['teacher']['wall_s']:.0f}"),
        row("student before warm-up (6-block subset)", warm["pre"]["student"]),
        row(f"student after {args.warmup_steps} warm-up steps (start of every arm)", warm["post"]["student"],
            f"{results['warmup']['wall_s']:.0f}"),
    ]
    lines += [row(f"student + {args.steps} steps {name}", results[name]["metrics"]["post"]["student"],
                  f"{results[name]['wall_s']:.0f}") for name in ARMS]
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
