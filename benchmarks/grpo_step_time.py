"""Benchmark: a GRPO step of Forge's RLTrainer side by side with TRL's own GRPOTrainer, and an SFT step.

One process, the 6-block SmolLM2 student (`model=smollm2`, built with Forge's recipe), Europarl
EN->FR prompts (the task handler's own token ids; TRL gets the same ids as text, checked to
re-tokenise identically), chrF reward. Each round takes the next prompt and runs, interleaved:

    trl     plain `trl.GRPOTrainer` (fused LM head: on CPU it projects every prompt+completion position)
    forge   `forge.trainers.rl.RLTrainer.from_components` (LM head over the completion positions only)
    sft     Forge's FinetuningTrainer on the same prompt + the sampled completions (CE on the completions)

at beta 0 and 0.04, each a whole `training_step` (generation, rewards, log-prob forward(s), loss,
backward) plus gradient clipping and the AdamW step. All models start as deep copies of one student.
Both GRPO variants sample under the stream Forge uses (`rl:<rank>:<global_step>:<micro-step>`; TRL's
`_generate_single_turn` is wrapped in the same `seeded` block) from the same weights (Forge's policy
is set to TRL's after each round, untimed; who goes first alternates), so their completion ids must be
identical (asserted) and their losses, rewards, KL and gradient norms agree to float noise (reported).
The pieces (generation, policy log-prob forward, reference forward, backward, optimizer) are timed by
wrapping the trainers' methods. Sampling is the same work in both and the part of the step most
sensitive to other jobs on the cores, so Forge / TRL is also given per round, as min / min, and
without generation + rewards. Target (issue): Forge's GRPO step <= 0.85x TRL's.

    .venv/bin/python benchmarks/grpo_step_time.py    # 8 timed rounds: ~6 min on 2 quiet CPU cores, 30+ shared
    .venv/bin/python benchmarks/grpo_step_time.py --repeats 12 --completion-length 32 --generations 8
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "europarl"
BETAS = (0.0, 0.04)
PIECES = ("generate", "reward", "policy_fwd", "ref_logps", "backward", "optim")


def load_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Config, plan, processor, prepared data, RL rows and the student, as `python launch.py` builds them."""
    from benchmarks.kd_step_time import compose
    from forge.data.prompt_rows import prompt_rows
    from forge.models.loading import load_processor
    from forge.models.recipe import build_student
    from forge.plan import build_plan

    cfg = compose(["task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "mode=rl", "reward=chrf",
                   f"task.max_train_samples={args.warmup + args.repeats}", "logger=none", "seed=42",
                   f"rl.num_generations={args.generations}", f"rl.max_completion_length={args.completion_length}",
                   f"trainer.per_device_train_batch_size={args.generations}"])
    plan = build_plan(cfg)
    processor = load_processor(cfg.model.student, plan.handler.model_kind)
    data = plan.handler.prepare(processor)
    student = build_student(cfg.model.student, processor, kind=plan.handler.model_kind,
                            num_labels=plan.handler.num_labels, attn_implementation=plan.attn_implementation,
                            seed=int(cfg.seed))
    rows = [dict(r) for r in prompt_rows(data.train)]
    for row in rows:  # TRL's text prompt must tokenise back to the task's ids
        row["text"] = processor.decode(row["prompt"])
        assert processor(text=[row["text"]])["input_ids"][0] == row["prompt"], "prompt text does not round-trip"
    return {"cfg": cfg, "plan": plan, "processor": processor, "data": data, "student": student, "rows": rows}


def grpo_config(s: dict[str, Any], args: argparse.Namespace, beta: float, out: Path, forge: bool):
    """Forge's GRPOConfig as the pipeline makes it (training_arguments + RLSettings), or a plain one for TRL."""
    from trl import GRPOConfig

    from forge.trainers.args import training_arguments

    gen = {"min_new_tokens": args.completion_length}  # every completion exactly completion_length tokens
    cfg = s["cfg"]
    if forge:
        settings = dataclasses.replace(s["plan"].mode.settings, beta=beta)
        grpo = training_arguments(cfg.trainer, output_dir=out, seed=int(cfg.seed), args_class=GRPOConfig,
                                  generation_kwargs=gen, **settings.grpo_arguments(reward_count=1))
        return grpo, settings
    t = cfg.trainer
    return GRPOConfig(output_dir=str(out), seed=int(cfg.seed), per_device_train_batch_size=args.generations,
                      num_generations=args.generations, max_completion_length=args.completion_length,
                      generation_kwargs=gen, beta=beta, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
                      max_grad_norm=t.max_grad_norm, gradient_checkpointing=False, bf16=False, use_cpu=True,
                      report_to=[], disable_tqdm=True, log_completions=False), None


SAME = ("num_generations", "max_completion_length", "generation_kwargs", "temperature", "top_p", "top_k", "beta",
        "loss_type", "epsilon", "scale_rewards", "num_iterations", "learning_rate", "weight_decay", "max_grad_norm",
        "bf16", "gradient_checkpointing", "per_device_train_batch_size", "cast_lm_head_to_fp32", "disable_dropout")


def build_pair(s: dict[str, Any], args: argparse.Namespace, beta: float, models: dict[str, Any], tmp: Path):
    """(TRL's GRPOTrainer, Forge's RLTrainer) at `beta`, each on its own copy of the student."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from forge.rewards.base import RewardContext
    from forge.rewards.text import ChrF
    from forge.trainers.components import TrainingComponents
    from forge.trainers.rl import RLTrainer

    proc, tag = s["processor"], f"b{beta:g}"
    (trl_args, _), (forge_args, settings) = (grpo_config(s, args, beta, tmp / f"{v}_{tag}", forge=v == "forge")
                                             for v in ("trl", "forge"))
    differ = {k: (getattr(trl_args, k), getattr(forge_args, k)) for k in SAME
              if getattr(trl_args, k) != getattr(forge_args, k)}
    assert not differ, f"TRL's and Forge's GRPOConfig differ: {differ}"
    trl_model = models[f"trl_{tag}"]
    if beta > 0:  # TRL reloads its reference from config._name_or_path: save the student as it starts
        trl_model.save_pretrained(tmp / f"trl_ref_{tag}")
        trl_model.config._name_or_path = str(tmp / f"trl_ref_{tag}")
    reward = ChrF(name="chrf")
    trl = GRPOTrainer(model=trl_model, reward_funcs=[reward], args=trl_args, processing_class=proc,
                      train_dataset=Dataset.from_list([{"prompt": r["text"], "reference": r["reference"]}
                                                       for r in s["rows"]]))
    reward.bind(RewardContext(tokenizer=proc, eos_token_ids=list(trl.eos_token_ids), pad_token_id=proc.pad_token_id))
    components = TrainingComponents(student=models[f"forge_{tag}"], train_dataset=s["data"].train,
                                    collator=s["data"].collator, tokenizer=proc)
    return trl, RLTrainer.from_components(components, forge_args, settings=settings, rewards=[ChrF(name="chrf")])


def build_sft(s: dict[str, Any], args: argparse.Namespace, model: Any, tmp: Path):
    from forge.trainers.args import training_arguments
    from forge.trainers.components import TrainingComponents
    from forge.trainers.finetuning import FinetuningTrainer

    targs = training_arguments(s["cfg"].trainer, output_dir=tmp / "sft", seed=int(s["cfg"].seed),
                               per_device_train_batch_size=args.generations)
    components = TrainingComponents(student=model, train_dataset=s["data"].train, collator=s["data"].collator,
                                    tokenizer=s["processor"])
    return FinetuningTrainer.from_components(components, targs)


def _wrap(trainer: Any, owner: Any, name: str, label: Callable[[], str] | str, around: Callable = None) -> None:
    """Add the seconds spent in `owner.name` to `trainer.pieces[label]`."""
    original = getattr(owner, name)

    def timed(*a: Any, **k: Any) -> Any:
        key = label() if callable(label) else label
        t0 = time.perf_counter()
        try:
            return around(original, *a, **k) if around else original(*a, **k)
        finally:
            trainer.pieces[key] = trainer.pieces.get(key, 0.0) + time.perf_counter() - t0

    setattr(owner, name, timed)


def instrument(name: str, trainer: Any) -> Any:
    """Time the step's pieces; TRL samples in the same seeded stream as Forge's RLTrainer."""
    from forge.runtime.seeds import derived_seed, seeded

    trainer.pieces, trainer.sampled = {}, []

    def generate(original: Callable, *a: Any, **k: Any) -> Any:
        micro = trainer._step % max(int(trainer.args.gradient_accumulation_steps), 1)  # as RLTrainer's stream
        stream = f"rl:{trainer.args.process_index}:{trainer.state.global_step}:{micro}"
        with seeded(derived_seed(trainer.args.seed, stream) if name.startswith("trl") else None):
            out = original(*a, **k)
        trainer.sampled.append([list(ids) for ids in out[0]])
        return out

    if name == "sft":
        _wrap(trainer, trainer, "compute_loss", "policy_fwd")
    else:
        _wrap(trainer, trainer, "_generate_single_turn", "generate", generate)
        _wrap(trainer, trainer, "_calculate_rewards", "reward")
        _wrap(trainer, trainer, "_get_per_token_logps_and_entropies",
              lambda: "policy_fwd" if torch.is_grad_enabled() else "ref_logps")
    _wrap(trainer, trainer.accelerator, "backward", "backward")
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def timed_step(trainer: Any, inputs: Any) -> dict[str, Any]:
    """One training_step + clip + AdamW step: total seconds, pieces, loss and gradient norm."""
    trainer.pieces = {}
    t0 = time.perf_counter()
    loss = trainer.training_step(trainer.model, inputs, None)
    t1 = time.perf_counter()
    norm = torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.args.max_grad_norm)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    total = time.perf_counter() - t0
    trainer.pieces["optim"] = total - (t1 - t0)
    return {"total": total, **trainer.pieces, "loss": float(loss), "grad_norm": float(norm)}


def grpo_round(trainer: Any, rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
    from forge.runtime.seeds import derived_seed

    trainer.state.global_step = step
    torch.manual_seed(derived_seed(trainer.args.seed, f"bench:{step}"))  # the post-generation shuffle alike
    record = timed_step(trainer, rows)
    metrics = trainer._metrics["train"]
    record.update({k: float(metrics[k][-1]) for k in ("reward", "kl", "entropy") if metrics.get(k)})
    record["completions"] = trainer.sampled[-1]
    return record


def sft_inputs(prompt: list[int], completions: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = torch.tensor([prompt + c for c in completions])
    labels = ids.clone()
    labels[:, :len(prompt)] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def run_rounds(s: dict[str, Any], args: argparse.Namespace, tmp: Path) -> tuple[dict[str, list], dict[str, Any]]:
    """Warm-up and timed rounds, every variant once per round (one prompt); per-variant records and checks."""
    names = [f"{v}_b{b:g}" for b in BETAS for v in ("trl", "forge")] + ["sft"]
    models = {name: copy.deepcopy(s["student"]) for name in names}  # before any trainer touches one
    trainers = {"sft": build_sft(s, args, models["sft"], tmp)}
    for beta in BETAS:
        trainers[f"trl_b{beta:g}"], trainers[f"forge_b{beta:g}"] = build_pair(s, args, beta, models, tmp)
    trainers = {name: instrument(name, trainer) for name, trainer in trainers.items()}
    records: dict[str, list] = {n: [] for n in names}
    checks: dict[str, Any] = {"completion_lengths": set(), "max_diff": {}}
    for step, row in enumerate(s["rows"]):
        done = {}
        for beta in BETAS:
            trl, forge = f"trl_b{beta:g}", f"forge_b{beta:g}"
            order = ((trl, row["text"]), (forge, row["prompt"]))
            for name, prompt in order if step % 2 == 0 else order[::-1]:  # alternate who goes first
                inputs = [{"prompt": prompt, "reference": row["reference"]} for _ in range(args.generations)]
                done[name] = grpo_round(trainers[name], inputs, step)
            sampled = done[forge].pop("completions")
            assert done[trl].pop("completions") == sampled, f"TRL, Forge sampled different ids: {forge} round {step}"
            checks["completion_lengths"].update(len(c) for c in sampled)
            _record_diffs(checks["max_diff"], f"beta {beta:g}", done[trl], done[forge])
            trainers[forge].model.load_state_dict(trainers[trl].model.state_dict())  # next round: same weights
            if beta == 0.0:
                done["sft"] = timed_step(trainers["sft"], sft_inputs(row["prompt"], sampled))
        if step >= args.warmup:
            for name, record in done.items():
                records[name].append(record)
        print(f"round {step}{' (warm-up)' if step < args.warmup else ''}: "
              + ", ".join(f"{n} {done[n]['total']:.2f}s" for n in names), flush=True)
    checks["completion_lengths"] = sorted(checks["completion_lengths"])
    checks["prompt_lengths"] = [len(r["prompt"]) for r in s["rows"][args.warmup:]]
    return records, checks


def _record_diffs(out: dict[str, Any], tag: str, trl: dict[str, Any], forge: dict[str, Any]) -> None:
    """The largest |forge - trl| seen for each compared quantity (with both values and the relative diff)."""
    for key in ("loss", "grad_norm", "reward", "kl", "entropy"):
        diff = abs(forge.get(key, 0.0) - trl.get(key, 0.0))
        if key in trl and diff >= out.get(f"{tag} {key}", {}).get("abs", -1.0):
            out[f"{tag} {key}"] = {"abs": diff, "rel": diff / max(abs(trl[key]), 1e-12), "trl": trl[key],
                                   "forge": forge[key]}


def summarize(records: dict[str, list]) -> list[dict[str, Any]]:
    """One row per variant: median (and min) seconds, pieces, ÷ SFT; Forge ÷ TRL by four estimators."""
    for recs in records.values():
        for r in recs:  # the step without sampling and rewards (the same work in both GRPO variants)
            r["train"] = r["total"] - r.get("generate", 0.0) - r.get("reward", 0.0)
    med = {n: {k: statistics.median(r.get(k, 0.0) for r in recs) for k in ("total", "train", *PIECES)}
           for n, recs in records.items()}
    rows = []
    for name in ("sft", *[f"{v}_b{b:g}" for b in BETAS for v in ("trl", "forge")]):
        variant, _, tag = name.partition("_b")
        m, low = med[name], min(r["total"] for r in records[name])
        row = {"variant": variant, "beta": float(tag) if tag else None, "median_s": m["total"], "min_s": low,
               "over_sft": m["total"] / med["sft"]["total"], **{p: m[p] for p in PIECES}}
        if variant == "forge":
            trl = records[f"trl_b{tag}"]
            row["forge_over_trl"] = m["total"] / med[f"trl_b{tag}"]["total"]
            row["paired"] = statistics.median(f["total"] / t["total"] for f, t in zip(records[name], trl))
            row["min_ratio"] = low / min(r["total"] for r in trl)
            row["excl_generation"] = m["train"] / med[f"trl_b{tag}"]["train"]
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], checks: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"GRPO step vs TRL's GRPOTrainer and an SFT step (CPU, {torch.get_num_threads()} threads; 6-block "
             f"SmolLM2 student, {args.generations} completions x {args.completion_length} tokens per step, chrF "
             f"reward; median of {args.repeats} interleaved rounds after {args.warmup} warm-up; prompt lengths "
             f"{min(checks['prompt_lengths'])}-{max(checks['prompt_lengths'])}; pieces are medians, seconds)", "",
             "| variant | beta | median step s | min step s | ÷ SFT | Forge ÷ TRL | generate | policy fwd | ref logps "
             "| backward | optim | reward |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        beta = "-" if r["beta"] is None else f"{r['beta']:g}"
        ratio = f"**{r['forge_over_trl']:.2f}**" if "forge_over_trl" in r else ""
        lines.append(f"| {r['variant']} | {beta} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['over_sft']:.2f} | "
                     f"{ratio} | " + " | ".join(f"{r[p]:.2f}" for p in ("generate", "policy_fwd", "ref_logps",
                                                                       "backward", "optim", "reward")) + " |")
    forge = [r for r in rows if "forge_over_trl" in r]
    held = all(r["forge_over_trl"] <= 0.85 for r in forge)
    lines += ["", f"Target Forge <= 0.85x TRL (ratio of median steps): {'held' if held else 'NOT held'}. "
              "Forge ÷ TRL by estimator: " + "; ".join(
                  f"beta {r['beta']:g}: median {r['forge_over_trl']:.2f}, paired per round {r['paired']:.2f}, "
                  f"min {r['min_ratio']:.2f}, excluding generation+reward {r['excl_generation']:.2f}" for r in forge)
              + ".", "Sampled completion ids identical (TRL vs Forge, asserted every round, warm-up included); "
              f"completion lengths {checks['completion_lengths']}.",
              "Largest Forge-vs-TRL differences: " + "; ".join(
                  f"{k} {v['abs']:.2e} (rel {v['rel']:.1e})" for k, v in checks["max_diff"].items()) + "."]
    return "\n".join(lines)


def main() -> None:
    from benchmarks.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeats", type=int, default=8, help="timed rounds (one prompt each)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--completion-length", type=int, default=32)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "grpo_step_time"))
    args = parser.parse_args()
    setup = load_setup(args)
    with tempfile.TemporaryDirectory(prefix="forge-grpo-bench-") as tmp:
        records, checks = run_rounds(setup, args, Path(tmp))
    rows = summarize(records)
    write_results(Path(args.out), render(rows, checks, args),
                  {"args": vars(args), "rows": rows, "checks": checks, "records": records})


if __name__ == "__main__":
    main()
