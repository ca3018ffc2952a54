"""Benchmark: distilling the offline Qwen3-VL teacher into the student on synthetic pages (Synthmix),
scored on held-out synthetic pages and on real olmOCR-bench pages, beside Tesseract.

Every run is a real `launch.py` subprocess (`benchmarks/launch_runs.py`):

  1. teacher   mode=sft of tiny-qwen3vl-teacher (4 text blocks, hidden 256; random init) on the
               task's training pages: the offline teacher is *trained first*, so distillation has
               something to transfer. Reused when `<out>/teacher/metrics.json` exists (--retrain-teacher).
  2. warmup    mode=sft of tiny-qwen3vl-student (2 blocks, hidden 128) for a few steps, so that
               on-policy arms sample text rather than a random model's repeated token: "the student
               before" every arm.
  3. arms from the warm student, each for every seed, with the same steps, learning rate and pages
     per step:  sft | kd_combined_r | kd_combined_far (teacher_strategy=frozen_sft with the trained
     teacher's checkpoint) | gkd_on_policy (lmbda 1, JSD beta 0.5) | rl_edit_similarity (GRPO).
  4. every model above scored by mode=eval on task=olmocr_bench (--bench: the olmOCR-bench sample's
     21 PDFs and 120 tests, rendered with pypdfium2): olmocr's own checks, pass rate overall (an
     arm's first seed only unless --bench-all-seeds: each costs minutes of generation on CPU).
  Re-running with the same --out continues: finished runs are read back, not redone.
  5. Tesseract (Debian tesseract-ocr through pytesseract) on the same held-out synthetic pages and
     bench pages, scored by the same metrics.

Columns: edit similarity and exact match on the held-out synthetic pages (rapidfuzz), the olmocr
check pass rate on those pages' derived tests, and the olmocr-bench pass rate. Tiny random-init
models score low on real PDFs: a true low number is the right number.

    python benchmarks/ocr_distillation.py       # defaults: about 45 min on 2 CPU cores (README)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from launch_runs import REPO, run_stage, spread  # noqa: E402  (benchmarks/ is not a package)

BENCH = REPO.parent / "shared" / "data" / "ocr" / "olmocr-bench" / "sample_data"
ARMS = ("sft", "kd_combined_r", "kd_combined_far", "gkd_on_policy", "rl_edit_similarity")
SYNTH = ("validation/edit_similarity", "validation/exact_match", "validation/pass_rate")


def pages(args: argparse.Namespace) -> list[str]:
    """The synthetic-page task every stage and arm trains and is scored on."""
    side = args.page_side
    return ["task=ocr_synth", "model=tiny_vlm", "logger=none", f"task.num_train={args.train_pages}",
            f"task.num_validation={args.eval_pages}", f"task.page.width={side}", f"task.page.height={side}",
            f"task.page.margin={args.margin}", f"task.page.font_size={args.font_size}", f"task.page.blocks={args.blocks}",
            f"task.max_pixels={side * side}", f"task.max_length={args.max_length}",
            f"task.max_new_tokens={args.max_new_tokens}", f"trainer.per_device_eval_batch_size={args.eval_pages}",
            "trainer.logging_steps=10", "trainer.save_steps=0", f"trainer.warmup_ratio={args.warmup_ratio}"]


def stage_overrides(args: argparse.Namespace, out: Path, name: str, seed: int) -> list[str]:
    """launch.py overrides of one stage (teacher, warmup) or arm, for one seed."""
    base = [*pages(args), f"seed={seed}", f"trainer.per_device_train_batch_size={args.batch}"]
    if name == "teacher":
        return [*base, "mode=sft", "model.student.name_or_path=tiny-qwen3vl-teacher",
                f"trainer.max_steps={args.teacher_steps}", f"trainer.learning_rate={args.teacher_lr}"]
    if name == "warmup":
        return [*base, "mode=sft", f"trainer.max_steps={args.warmup_steps}", f"trainer.learning_rate={args.lr}"]
    teacher = ["teacher_strategy=frozen_sft", f"teacher_strategy.checkpoint={out / 'teacher' / 'final'}"]
    arms = {
        "sft": ["mode=sft"],
        "kd_combined_r": ["mode=kd", "loss=combined_r", "alpha=0.5", *teacher],
        "kd_combined_far": ["mode=kd", "loss=combined_far", "alpha=0.5", *teacher],
        "gkd_on_policy": ["mode=gkd", *teacher, "mode.trainer.lmbda=1.0", "mode.trainer.beta=0.5",
                          "mode.trainer.temperature=1.0", f"mode.trainer.max_new_tokens={args.completion_length}"],
        "rl_edit_similarity": ["mode=rl", "reward=edit_similarity", f"rl.num_generations={args.generations}",
                               f"rl.max_completion_length={args.completion_length}",
                               f"trainer.per_device_train_batch_size={args.batch * args.generations}"],
    }
    return [*base, *arms[name], "model.student.source=local", f"model.student.name_or_path={out / 'warmup' / 'final'}",
            f"trainer.max_steps={args.steps}", f"trainer.learning_rate={args.lr}"]


def bench_overrides(args: argparse.Namespace, model_dir: Path) -> list[str]:
    """mode=eval of a saved model on the real olmOCR-bench pages."""
    return ["task=olmocr_bench", f"task.data_dir={args.bench}", "model=tiny_vlm", "mode=eval", "logger=none",
            "model.student.source=local", f"model.student.name_or_path={model_dir}",
            f"task.max_pixels={args.bench_pixels}", f"task.max_length={args.bench_pixels // 1024 + 64}",
            f"task.max_new_tokens={args.bench_new_tokens}", "trainer.per_device_eval_batch_size=7"]


def bench_score(args: argparse.Namespace, out: Path, label: str) -> float | None:
    run = run_stage(f"bench_{label}", bench_overrides(args, out / label / "final"), out)
    return run["metrics"]["post"]["student"]["validation/pass_rate"] if "metrics" in run else None


def tesseract_row(args: argparse.Namespace) -> dict[str, Any]:
    """Tesseract on the held-out synthetic pages and on the bench pages, by the same metrics."""
    from forge.data.ocr_synth import OcrSynthHandler
    from forge.data.olmocr_bench_task import OlmocrBenchHandler
    from forge.eval.olmocr_metrics import pass_rate_metrics

    try:
        from forge.ocr.tesseract import check_tesseract, tesseract_markdown

        check_tesseract()
    except Exception as exc:  # noqa: BLE001 - the row says why
        return {"error": str(exc)}
    started = time.time()
    synth = OcrSynthHandler(name="ocr_synth", num_train=1, num_validation=args.eval_pages, page={
        "width": args.page_side, "height": args.page_side, "margin": args.margin, "font_size": args.font_size,
        "blocks": args.blocks}).load_splits()["validation"]
    predictions = [tesseract_markdown(synth.image(i)) for i in range(len(synth))]
    scores = OcrSynthHandler(name="ocr_synth").compute_metrics(predictions, synth.targets)
    bench = OlmocrBenchHandler(name="olmocr_bench", data_dir=str(args.bench), max_pixels=args.bench_pixels)
    pairs = bench.load_splits()["validation"]
    bench_predictions = [tesseract_markdown(pairs.image(i)) for i in range(len(pairs))]
    scores["bench_pass_rate"] = pass_rate_metrics(bench_predictions, pairs.targets)["pass_rate"]
    return {"scores": scores, "wall_s": round(time.time() - started, 1)}


def model_row(label: str, synth: dict[str, float], bench: float | None, note: str = "") -> str:
    cells = " | ".join(f"{synth[k]:.3f}" for k in SYNTH)
    return f"| {label} | {cells} | {'—' if bench is None else f'{bench:.3f}'} | {note} |"


def arm_row(arm: str, runs: list[dict], benches: list[float | None]) -> str:
    done = [r for r in runs if "metrics" in r]
    if not done:
        return f"| {arm} | failed | | | | |"
    post = [r["metrics"]["post"]["student"] for r in done]
    cells = " | ".join(spread([p[k] for p in post], 3) for k in SYNTH)
    scored = [b for b in benches if b is not None]
    per_seed = " / ".join(f"{p[SYNTH[0]]:.3f}" for p in post)
    bench = spread(scored, 3) if scored else "—"
    return f"| {arm} | {cells} | {bench} | per seed {per_seed}; {sum(r['wall_s'] for r in done) / len(done):.0f} s |"


def table(args: argparse.Namespace, stages: dict, results: dict, benches: dict, tess: dict) -> str:
    teacher, warm = stages["teacher"]["metrics"], stages["warmup"]["metrics"]
    lines = [
        f"Synthetic pages {args.page_side}x{args.page_side} px ({args.blocks} blocks, font {args.font_size}): "
        f"{args.train_pages} training pages, {args.eval_pages} held-out; greedy ≤{args.max_new_tokens} new tokens. "
        f"Teacher: {args.teacher_steps} SFT steps (batch {args.batch}, lr {args.teacher_lr}). Student: "
        f"{args.warmup_steps} warm-up SFT steps, then {args.steps} steps per arm at lr {args.lr}, batch {args.batch} "
        f"pages (GRPO: {args.generations} completions per page, ≤{args.completion_length} tokens), seeds "
        f"{', '.join(map(str, args.seeds))}. olmOCR-bench: {args.bench.name} ({args.bench_pixels} px per page, "
        f"≤{args.bench_new_tokens} new tokens), olmocr's checks"
        f"{'' if args.bench_all_seeds else ', first seed of each arm'}. Arms: mean ± half-range over seeds.",
        "",
        "| model | edit similarity | exact match | synth check pass rate | olmOCR-bench pass rate | notes |",
        "|---|---|---|---|---|---|",
        model_row("teacher before training (random init)", teacher["pre"]["student"], None),
        model_row(f"teacher after {args.teacher_steps} SFT steps", teacher["post"]["student"], benches.get("teacher"),
                  f"{stages['teacher']['wall_s']:.0f} s"),
        model_row("student before (random init)", warm["pre"]["student"], None),
        model_row(f"student after {args.warmup_steps} warm-up steps (every arm's start)", warm["post"]["student"],
                  benches.get("warmup"), f"{stages['warmup']['wall_s']:.0f} s"),
        *[arm_row(arm, results[arm], benches.get(arm, [])) for arm in args.arms],
    ]
    if "scores" in tess:
        s = tess["scores"]
        lines.append(f"| Tesseract (tesseract-ocr, eng) | {s['edit_similarity']:.3f} | {s['exact_match']:.3f} | "
                     f"{s['pass_rate']:.3f} | {s['bench_pass_rate']:.3f} | {tess['wall_s']:.0f} s |")
    else:
        lines.append(f"| Tesseract | not run: {tess.get('error')} | | | | |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "ocr_distillation")
    parser.add_argument("--bench", type=Path, default=BENCH, help="an olmOCR-bench folder (JSONL + pdfs/)")
    parser.add_argument("--page-side", type=int, default=256)
    parser.add_argument("--margin", type=int, default=16)
    parser.add_argument("--font-size", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--train-pages", type=int, default=1024)
    parser.add_argument("--eval-pages", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="pages per step")
    parser.add_argument("--warmup-ratio", type=float, default=0.05, help="of every stage's steps")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--teacher-lr", type=float, default=2e-3)
    parser.add_argument("--retrain-teacher", action="store_true", help="train the teacher even if <out>/teacher exists")
    parser.add_argument("--warmup-steps", type=int, default=60)
    parser.add_argument("--steps", type=int, default=40, help="steps of each arm")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=64)
    parser.add_argument("--bench-pixels", type=int, default=448 * 448)
    parser.add_argument("--bench-new-tokens", type=int, default=64)
    parser.add_argument("--bench-all-seeds", action="store_true",
                        help="score every seed's model on olmOCR-bench (default: the first seed's; ~3 min each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    return parser.parse_args()


def trained_teacher(args: argparse.Namespace) -> dict:
    """The teacher stage, reused from an earlier invocation when it finished (the cached teacher)."""
    done = args.out / "teacher" / "metrics.json"
    if done.is_file() and not args.retrain_teacher:
        print(f"[teacher] reusing {done.parent}", flush=True)
        return {"metrics": json.loads(done.read_text()), "wall_s": 0.0, "reused": True}
    return run_stage("teacher", stage_overrides(args, args.out, "teacher", args.seeds[0]), args.out)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stages = {"teacher": trained_teacher(args)}
    stages["warmup"] = run_stage("warmup", stage_overrides(args, args.out, "warmup", args.seeds[0]), args.out)
    for name, stage in stages.items():
        if "error" in stage:
            sys.exit(f"{name} failed: see {args.out / f'{name}.stdout.log'}")
    results: dict[str, list] = {}
    benches: dict[str, Any] = {name: bench_score(args, args.out, name) for name in stages}
    for seed in args.seeds:
        for arm in args.arms:
            label = f"{arm}_seed{seed}"
            results.setdefault(arm, []).append(run_stage(label, stage_overrides(args, args.out, arm, seed), args.out))
            scored = "metrics" in results[arm][-1] and (args.bench_all_seeds or seed == args.seeds[0])
            benches.setdefault(arm, []).append(bench_score(args, args.out, label) if scored else None)
            (args.out / "results.partial.json").write_text(json.dumps({"stages": stages, "arms": results}, indent=2))
    tess = tesseract_row(args)
    text = table(args, stages, results, benches, tess)
    total = time.time() - started
    text += f"\n\nTotal wall time of this invocation: {total / 60:.1f} min."
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "stages": stages, "arms": results, "bench": benches,
         "tesseract": tess, "total_wall_s": round(total, 1)}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
