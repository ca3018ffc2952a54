"""Benchmark: SFT vs KD vs GKD (off- and on-policy) on Europarl EN→FR, offline SmolLM2 pair.

Every arm trains the same 6-layer student (layers of SmolLM2-135M-Instruct) for the same number of
steps, batch and learning rate, on the same held-out sentences, through `launch.py` (real runs,
real run directories). The teacher is SmolLM2-135M-Instruct fine-tuned on Europarl once (the KD
arm's `teacher_strategy=frozen_sft` writes `teacher_sft/`, which the other arms load), so all
distilling arms share one teacher. Prints one markdown table (BLEU and chrF, sacrebleu) and
writes it with the raw numbers to `<out>/results.{md,json}`.

    python benchmarks/gkd_translation.py            # ~30 min on 2 CPU cores

Arms:  sft            mode=sft (cross-entropy on the references)
       kd_forward_kl  mode=kd loss=response_kl (T=1), alpha 0.5
       gkd_off_policy mode=gkd lmbda=0 (dataset completions), beta 0.5
       gkd_on_policy  mode=gkd lmbda=1 (student samples), beta 0.5
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


def common(args: argparse.Namespace) -> list[str]:
    return [
        "task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "logger=none",
        f"task.max_eval_samples={args.eval}", f"task.max_length={args.max_length}",
        f"task.max_new_tokens={args.max_new_tokens}", f"trainer.max_steps={args.steps}",
        f"trainer.per_device_train_batch_size={args.batch}", "trainer.per_device_eval_batch_size=32",
        f"trainer.learning_rate={args.lr}", "trainer.logging_steps=5", "trainer.save_steps=0",
        f"seed={args.seed}",
    ]


def arms(args: argparse.Namespace, teacher_dir: Path) -> dict[str, list[str]]:
    teacher = ["teacher_strategy=frozen_sft", f"teacher_strategy.checkpoint={teacher_dir}"]
    gkd = ["mode=gkd", *teacher, "mode.trainer.beta=0.5", "mode.trainer.temperature=1.0",
           f"mode.trainer.max_new_tokens={args.max_new_tokens}"]
    return {
        "kd_forward_kl": ["mode=kd", "loss=response_kl", "loss.temperature=1.0", "alpha=0.5",
                          "teacher_strategy=frozen_sft", f"teacher_strategy.finetune_steps={args.teacher_steps}",
                          f"teacher_strategy.finetune_learning_rate={args.teacher_lr}",
                          f"teacher_strategy.finetune_batch_size={args.batch}"],
        "sft": ["mode=sft"],
        "gkd_off_policy": [*gkd, "mode.trainer.lmbda=0.0"],
        "gkd_on_policy": [*gkd, "mode.trainer.lmbda=1.0"],
    }


def run_arm(name: str, overrides: list[str], out: Path) -> tuple[dict, Path, float]:
    run_dir = out / name
    cmd = [sys.executable, str(REPO / "launch.py"), *overrides, f"run_dir={run_dir}"]
    print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
    started = time.time()
    with open(out / f"{name}.stdout.log", "w") as log:
        subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    elapsed = time.time() - started
    return json.loads((run_dir / "metrics.json").read_text()), run_dir, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "gkd_translation")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--teacher-steps", type=int, default=60)
    parser.add_argument("--teacher-lr", type=float, default=2e-4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval", type=int, default=80)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    teacher_dir = args.out / "kd_forward_kl" / "teacher_sft"
    for name, extra in arms(args, teacher_dir).items():
        metrics, run_dir, elapsed = run_arm(name, [*common(args), *extra], args.out)
        results[name] = {"metrics": metrics, "run_dir": str(run_dir), "wall_s": round(elapsed, 1)}
        print(f"[{name}] done in {elapsed:.0f} s: {metrics['post']['student']}", flush=True)

    teacher = results["kd_forward_kl"]["metrics"]["post"]["teacher"]
    lines = [
        f"Europarl EN→FR held-out ({args.eval} sentences), SmolLM2 6-layer student, {args.steps} steps × "
        f"batch {args.batch}, lr {args.lr}, greedy decoding ≤{args.max_new_tokens} tokens, seed {args.seed}.",
        "",
        "| model | BLEU | chrF | BLEU before | wall (s) |",
        "|---|---|---|---|---|",
        f"| teacher (SmolLM2-135M-Instruct, {args.teacher_steps} SFT steps) | {teacher['validation/bleu']:.2f} | "
        f"{teacher['validation/chrf']:.2f} | | |",
    ]
    for name in ("sft", "kd_forward_kl", "gkd_off_policy", "gkd_on_policy"):
        m = results[name]["metrics"]
        post, pre = m["post"]["student"], m["pre"]["student"]
        lines.append(f"| student, {name} | {post['validation/bleu']:.2f} | {post['validation/chrf']:.2f} | "
                     f"{pre['validation/bleu']:.2f} | {results[name]['wall_s']:.0f} |")
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
