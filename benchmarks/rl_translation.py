"""Benchmark: SFT vs on-policy GKD vs GRPO (three reward set-ups) on Europarl EN→FR, offline SmolLM2 pair.

Same shape as `benchmarks/gkd_translation.py`, every run a real `launch.py` subprocess:

  1. teacher   mode=sft on SmolLM2-135M-Instruct itself (30 blocks): the Europarl teacher;
  2. warmup    mode=sft on the 6-block student (blocks 0, 6, 12, 18, 24, 29; model=smollm2);
  3. five arms from that warm student, each for every seed, with the same steps, learning rate and
     prompts per step:
       sft                   mode=sft (cross-entropy on the references)
       gkd_on_policy         mode=gkd lmbda=1 (student samples), JSD beta 0.5, the fine-tuned teacher
       grpo_chrf             mode=rl reward=chrf
       grpo_teacher_logprob  mode=rl reward=teacher_logprob (the fine-tuned teacher scores samples)
       grpo_chrf_kl_teacher  mode=rl reward=chrf rl.kl_to=teacher rl.beta=0.04
     GRPO's batch counts completions: it samples --generations per prompt, so its
     per_device_train_batch_size is --prompts x --generations while SFT and GKD use --prompts.

Every score is sacrebleu BLEU / chrF of greedy translations of the same held-out sentences
(task.seed is pinned to 0 so the seed changes training, never the eval rows). The GRPO step time ÷
SFT step time is the ratio of the medians of train_runtime / global_step of this invocation's runs.
Writes `<out>/results.md`, `<out>/results.json` and `<out>/reward_curves.png` (per-step mean reward).

    python benchmarks/rl_translation.py      # defaults: ~40 min on 2 shared CPU cores (see README)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch_runs import REPO, run_stage, spread  # noqa: E402  (benchmarks/ is not a package)

DATA = REPO.parent / "shared" / "data" / "europarl"
ARMS = ("sft", "gkd_on_policy", "grpo_chrf", "grpo_teacher_logprob", "grpo_chrf_kl_teacher")
GRPO_ARMS = tuple(a for a in ARMS if a.startswith("grpo"))


def common(args: argparse.Namespace, batch: int, seed: int) -> list[str]:
    return [
        "task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "logger=none", "task.seed=0",
        f"task.max_train_samples={args.train_rows}", f"task.max_eval_samples={args.eval}",
        f"task.max_length={args.max_length}", f"task.max_new_tokens={args.max_new_tokens}",
        "task.system_prompt=You translate English to French.", f"trainer.per_device_train_batch_size={batch}",
        f"trainer.per_device_eval_batch_size={args.eval}", "trainer.logging_steps=1", "trainer.save_steps=0",
        f"seed={seed}",
    ]


def stage_overrides(args: argparse.Namespace, out: Path, name: str, seed: int) -> list[str]:
    """launch.py overrides of one stage (teacher, warmup) or arm, for one seed."""
    teacher_dir, warm_dir = out / "teacher" / "final", out / "warmup" / "final"
    if name == "teacher":
        return [*common(args, args.stage_batch, seed), "mode=sft", "model.student.init_layers=null",
                f"trainer.max_steps={args.teacher_steps}", f"trainer.learning_rate={args.teacher_lr}"]
    if name == "warmup":
        return [*common(args, args.stage_batch, seed), "mode=sft", f"trainer.max_steps={args.warmup_steps}",
                f"trainer.learning_rate={args.warmup_lr}"]
    from_warm = ["model.student.source=local", f"model.student.name_or_path={warm_dir}",
                 "model.student.init_layers=null", f"trainer.max_steps={args.steps}",
                 f"trainer.learning_rate={args.lr}"]
    teacher = ["teacher_strategy=frozen_sft", f"teacher_strategy.checkpoint={teacher_dir}"]
    rl = ["mode=rl", f"rl.num_generations={args.generations}", f"rl.max_completion_length={args.completion_length}",
          "rl.temperature=1.0"]
    arms = {
        "sft": ["mode=sft"],
        "gkd_on_policy": ["mode=gkd", *teacher, "mode.trainer.lmbda=1.0", "mode.trainer.beta=0.5",
                          "mode.trainer.temperature=1.0", f"mode.trainer.max_new_tokens={args.completion_length}"],
        "grpo_chrf": [*rl, "reward=chrf"],
        "grpo_teacher_logprob": [*rl, "reward=teacher_logprob", *teacher],
        "grpo_chrf_kl_teacher": [*rl, "reward=chrf", "rl.kl_to=teacher", f"rl.beta={args.kl_beta}", *teacher],
    }
    batch = args.prompts * (args.generations if name in GRPO_ARMS else 1)
    return [*common(args, batch, seed), *arms[name], *from_warm]


def arm_row(arm: str, runs: list[dict]) -> str:
    done = [r for r in runs if "metrics" in r]
    if not done:
        return f"| {arm} | failed | failed | | |"
    post = [r["metrics"]["post"]["student"] for r in done]
    bleu, chrf = [p["validation/bleu"] for p in post], [p["validation/chrf"] for p in post]
    per_seed = " / ".join(f"{b:.2f}, {c:.2f}" for b, c in zip(bleu, chrf))
    failed = f" ({len(runs) - len(done)} seed(s) failed)" if len(done) < len(runs) else ""
    walls = statistics.mean(r["wall_s"] for r in done)
    steps = statistics.mean(r["s_per_step"] for r in done)
    return f"| {arm}{failed} | {spread(bleu)} | {spread(chrf)} | {per_seed} | {walls:.0f} ({steps:.2f} s/step) |"


def step_ratio(results: dict, seeds: list[int]) -> dict:
    """GRPO step time ÷ SFT step time from train_runtime / global_step: each GRPO run against the SFT
    run of its own seed pass (run minutes apart, so under similar load), and the medians of all runs."""
    def median_of(arms: tuple[str, ...], key: str = "s_per_step") -> float | None:
        values = [r[key] for a in arms for r in results.get(a, []) if r.get(key) is not None]
        return statistics.median(values) if values else None

    paired = {}
    for i, seed in enumerate(seeds):
        sft = (results.get("sft") or [{}] * len(seeds))[i].get("s_per_step")
        for arm in GRPO_ARMS:
            grpo = (results.get(arm) or [{}] * len(seeds))[i].get("s_per_step")
            if sft and grpo:
                paired[f"{arm}_seed{seed}"] = grpo / sft
    sft, grpo = median_of(("sft",)), median_of(GRPO_ARMS)
    return {"paired": paired, "paired_median": statistics.median(paired.values()) if paired else None,
            "sft_s_per_step": sft, "grpo_s_per_step": grpo, "grpo_trl_step_time": median_of(GRPO_ARMS, "trl_step_time_median"),
            "ratio_of_medians": grpo / sft if sft and grpo else None}


def table(args: argparse.Namespace, stages: dict, results: dict, ratio: dict) -> str:
    def row(label: str, scores: dict, wall: str = "") -> str:
        return f"| {label} | {scores['validation/bleu']:.2f} | {scores['validation/chrf']:.2f} | | {wall} |"

    teacher, warm = stages["teacher"]["metrics"], stages["warmup"]["metrics"]
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        f"Europarl EN→FR, {args.eval} held-out sentences, greedy ≤{args.max_new_tokens} new tokens. Student: 6 of "
        f"SmolLM2-135M-Instruct's 30 blocks after {args.warmup_steps} SFT warm-up steps (batch {args.stage_batch}), then "
        f"{args.steps} steps per arm at lr {args.lr}, seeds {seeds}. Per step every arm sees {args.prompts} prompt(s): "
        f"SFT trains on their {args.prompts} reference(s), on-policy GKD on {args.prompts} student sample(s), GRPO on "
        f"{args.prompts * args.generations} sampled completions ({args.generations} per prompt, ≤{args.completion_length} "
        f"tokens, T=1; GKD samples ≤{args.completion_length} too). Teacher: {args.teacher_steps} SFT steps of batch "
        f"{args.stage_batch}. Arms: mean ± half-range over the seeds, then each seed's (BLEU, chrF).",
        "",
        "| model | BLEU | chrF | per seed (BLEU, chrF) | wall (s) |",
        "|---|---|---|---|---|",
        row("teacher before fine-tuning (SmolLM2-135M-Instruct)", teacher["pre"]["student"]),
        row(f"teacher after {args.teacher_steps} SFT steps", teacher["post"]["student"], f"{stages['teacher']['wall_s']:.0f}"),
        row("student before warm-up (6-block subset)", warm["pre"]["student"]),
        row(f"student after {args.warmup_steps} warm-up steps (start of every arm)", warm["post"]["student"],
            f"{stages['warmup']['wall_s']:.0f}"),
        *[arm_row(arm, results[arm]) for arm in args.arms],
    ]
    if ratio["paired_median"] is not None:
        pairs = ", ".join(f"{k} {v:.1f}x" for k, v in ratio["paired"].items())
        lines += ["", f"GRPO step time ÷ SFT step time (train_runtime / global_step, each GRPO run ÷ the SFT run of its seed "
                      f"pass): median {ratio['paired_median']:.1f}x ({pairs}). Medians over all runs: GRPO "
                      f"{ratio['grpo_s_per_step']:.2f} s/step (TRL's step_time {ratio['grpo_trl_step_time']:.2f} s), SFT "
                      f"{ratio['sft_s_per_step']:.2f} s/step = {ratio['ratio_of_medians']:.1f}x."]
    return "\n".join(lines)


def plot_curves(results: dict, out: Path) -> Path:
    """Per-step mean reward of each GRPO arm and seed: one panel per arm (rewards differ in scale)."""
    arms = [a for a in GRPO_ARMS if any(r.get("curve") for r in results.get(a, []))]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # no matplotlib: the curves as CSV
        path = out / "reward_curves.csv"
        rows = [f"{a},{i},{e['step']},{e['reward']}" for a in arms for i, r in enumerate(results[a])
                for e in r.get("curve", [])]
        path.write_text("arm,seed_index,step,reward\n" + "\n".join(rows) + "\n")
        return path
    fig, axes = plt.subplots(1, max(1, len(arms)), figsize=(5 * max(1, len(arms)), 3.6), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for run, seed in zip(results[arm], results[f"{arm}__seeds"]):
            curve = run.get("curve", [])
            steps, rewards = [e["step"] for e in curve], [e["reward"] for e in curve]
            line, = ax.plot(steps, rewards, marker=".", alpha=0.35, label=f"seed {seed} (per step)")
            smooth = [statistics.mean(rewards[max(0, i - 4):i + 1]) for i in range(len(rewards))]
            ax.plot(steps, smooth, color=line.get_color(), lw=2, label=f"seed {seed} (mean of last 5)")
        ax.set_title(arm)
        ax.set_xlabel("step")
        ax.set_ylabel("mean reward of the step's completions")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "reward_curves.png"
    fig.savefig(path, dpi=110)
    return path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "rl_translation")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--teacher-steps", type=int, default=100)
    parser.add_argument("--teacher-lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--warmup-lr", type=float, default=5e-4)
    parser.add_argument("--stage-batch", type=int, default=4, help="batch of the teacher and warm-up SFT stages")
    parser.add_argument("--steps", type=int, default=20, help="steps of each compared arm")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (SFT/GKD batch)")
    parser.add_argument("--generations", type=int, default=4, help="GRPO completions per prompt")
    parser.add_argument("--kl-beta", type=float, default=0.04, help="rl.beta of grpo_chrf_kl_teacher")
    parser.add_argument("--eval", type=int, default=60, help="held-out sentences")
    parser.add_argument("--train-rows", type=int, default=5000, help="task.max_train_samples (seeded subset)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=40, help="greedy eval translation cap")
    parser.add_argument("--completion-length", type=int, default=32, help="GRPO / GKD sampled completion cap")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stages = {}
    for name in ("teacher", "warmup"):
        stages[name] = run_stage(name, stage_overrides(args, args.out, name, args.seeds[0]), args.out)
        if "error" in stages[name]:
            sys.exit(f"{name} failed: see {args.out / f'{name}.stdout.log'}")
    results: dict[str, list] = {}
    for seed in args.seeds:
        for arm in args.arms:
            run = run_stage(f"{arm}_seed{seed}", stage_overrides(args, args.out, arm, seed), args.out)
            results.setdefault(arm, []).append(run)
            results.setdefault(f"{arm}__seeds", []).append(seed)
            (args.out / "results.partial.json").write_text(json.dumps({"stages": stages, "arms": results}, indent=2))
    ratio = step_ratio(results, args.seeds)
    text = table(args, stages, results, ratio)
    total = time.time() - started
    text += f"\n\nTotal wall time of this invocation: {total / 60:.1f} min."
    curves = plot_curves(results, args.out)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "stages": stages, "arms": results,
         "step_time_ratio": ratio, "total_wall_s": round(total, 1)}, indent=2))
    print(text)
    print(f"reward curves: {curves}")


if __name__ == "__main__":
    main()
