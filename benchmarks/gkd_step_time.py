"""Benchmark: a GKD (and KD) step from the stored top-k teacher view, against SFT, the live teacher and TRL.

One process, the 6-block SmolLM2 student and its 30-block teacher (`model=smollm2`), Europarl EN->FR
batches of the task handler's own token ids. Each round takes the next batch and runs every variant
once, in an order that rotates every round; each is a whole `training_step` plus gradient clipping
and the AdamW step, each on its own copy of the student:

    sft              Forge's FinetuningTrainer, cross-entropy on prompt + completion
    gkd_live_dense   Forge's GKDTrainer, λ 0, the in-process teacher's dense logits every step
    gkd_live_topk    the same with the teacher's top-k view (mode.trainer.top_k)
    gkd_store        the same top-k view read from the teacher-signal cache's top-k store
    gkd_on_policy    λ 1: the student samples, the teacher scores its samples (dense, as TRL)
    trl_off, trl_on  TRL's GKDTrainer at λ 0 and λ 1 (dense teacher logits, its only form)
    kd_live_topk     Forge's KD (DistillationTrainer): CE + 0.5 · response_kl over the teacher's
                     top-k view, the teacher's forward pass every step (`loss.top_k`)
    kd_store         the same KD step reading that view from the top-k store the GKD arm reads

Same tokens: TRL gets Forge's collated batch (prompt block left-padded, completion right-padded,
labels -100 on the prompt and padding); its counted tokens are checked to be Forge's completion
tokens. On-policy, every variant samples exactly `--new-tokens` tokens (min_new_tokens on both
generation configs), checked every round. TRL's CPU-hostile defaults are off (no bf16, no gradient
checkpointing, use_cpu). The pieces of a step (generation, teacher forward, student forward, loss,
backward, optimizer) are timed by wrapping the functions each trainer calls. Target (issue 17):
gkd_store ≤ 1.3× an SFT step.

    .venv/bin/python benchmarks/gkd_step_time.py                 # ~10 min on 2 CPU cores
    .venv/bin/python benchmarks/gkd_step_time.py --repeats 12 --batch 4 --new-tokens 32 --top-k 20
"""

from __future__ import annotations

import argparse
import copy
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
VARIANTS = ("sft", "gkd_live_dense", "gkd_live_topk", "gkd_store", "gkd_on_policy", "trl_off", "trl_on",
            "kd_live_topk", "kd_store")
PIECES = ("generate", "teacher", "student_fwd", "divergence", "backward", "optim")
#: the piece being timed for whichever trainer runs now (module-level functions are shared)
NOW: dict[str, Any] = {"pieces": None}


def load_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Config, plan, processor, data, student and teacher, as `python launch.py ... mode=gkd` builds them."""
    from benchmarks.kd_step_time import compose
    from forge.models.loading import load_processor
    from forge.models.recipe import build_student
    from forge.plan import build_plan
    from forge.teachers.strategy import load_teacher_for

    cfg = compose(["task=europarl_en_fr", f"task.data_dir={args.data}", "model=smollm2", "mode=gkd", "logger=none",
                   f"task.max_train_samples={args.batch * (args.warmup + args.repeats)}", "seed=42",
                   f"mode.trainer.top_k={args.top_k}", f"mode.trainer.max_new_tokens={args.new_tokens}",
                   f"trainer.per_device_train_batch_size={args.batch}", "teacher.cache=off"])
    plan = build_plan(cfg)
    processor = load_processor(cfg.model.student, plan.handler.model_kind)
    data = plan.handler.prepare(processor)
    student = build_student(cfg.model.student, processor, kind=plan.handler.model_kind, num_labels=None,
                            attn_implementation="sdpa", seed=int(cfg.seed))
    teacher = load_teacher_for(cfg, plan.handler, processor, attn_implementation="sdpa").eval()
    return {"cfg": cfg, "plan": plan, "processor": processor, "data": data, "student": student, "teacher": teacher}


def build_store(s: dict[str, Any], args: argparse.Namespace, tmp: Path) -> tuple[Any, dict[str, Any]]:
    """The top-k store of the teacher over the benchmark's training examples (one teacher pass)."""
    from forge.teachers.backends.hf import HFTeacherBackend
    from forge.teachers.cache.teacher_pass import TeacherPass
    from forge.teachers.cache.topk_session import TopKStoreSession
    from forge.teachers.cache.topk_store import TopKSpec

    source = TeacherPass(root=tmp / "cache", backend=HFTeacherBackend(s["teacher"]), dataset=s["data"].train,
                         collator=s["data"].collator, tokenizer=s["processor"], batch_size=8)
    session = TopKStoreSession(source, TopKSpec(args.top_k))
    return session.open(), session.report


def forge_trainer(s: dict[str, Any], model: Any, tmp: Path, name: str, **settings: Any) -> Any:
    from forge.teachers.backends.hf import HFTeacherBackend
    from forge.trainers.args import training_arguments
    from forge.trainers.gkd import GKDSettings, GKDTrainer

    cfg, proc = s["cfg"], s["processor"]
    store = settings.pop("store", None)
    args = training_arguments(cfg.trainer, output_dir=tmp / name, seed=int(cfg.seed))
    gkd = GKDSettings(**{**dict(cfg.mode.trainer), **settings})
    return GKDTrainer(model=model, args=args, train_dataset=s["data"].train, data_collator=s["data"].collator,
                      processing_class=proc, teacher_backend=HFTeacherBackend(s["teacher"]), settings=gkd,
                      pad_token_id=proc.pad_token_id, eos_token_id=[proc.eos_token_id], teacher_store=store)


def sft_trainer(s: dict[str, Any], model: Any, tmp: Path) -> Any:
    from forge.trainers.args import training_arguments
    from forge.trainers.components import TrainingComponents
    from forge.trainers.finetuning import FinetuningTrainer

    args = training_arguments(s["cfg"].trainer, output_dir=tmp / "sft", seed=int(s["cfg"].seed))
    return FinetuningTrainer.from_components(TrainingComponents(
        student=model, train_dataset=s["data"].train, collator=s["data"].collator, tokenizer=s["processor"]), args)


def kd_trainer(s: dict[str, Any], model: Any, tmp: Path, name: str, args: argparse.Namespace, store: Any = None) -> Any:
    """`mode=kd loss=response_kl loss.top_k=K` on the same batches: the teacher live, or the store."""
    from forge.losses.response import ResponseKL
    from forge.trainers.args import training_arguments
    from forge.trainers.components import TrainingComponents
    from forge.trainers.distillation import DistillationTrainer

    targs = training_arguments(s["cfg"].trainer, output_dir=tmp / name, seed=int(s["cfg"].seed))
    return DistillationTrainer.from_components(TrainingComponents(
        student=model, train_dataset=s["data"].train, collator=s["data"].collator, tokenizer=s["processor"],
        teacher=None if store is not None else s["teacher"], loss=ResponseKL(top_k=args.top_k), alpha=0.5,
        teacher_signals=store), targs)


def trl_trainer(s: dict[str, Any], model: Any, tmp: Path, lmbda: float, args: argparse.Namespace) -> Any:
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    settings = s["cfg"].mode.trainer
    config = GKDConfig(output_dir=str(tmp / f"trl_{lmbda:g}"), seed=int(s["cfg"].seed), lmbda=lmbda,
                       beta=float(settings.beta), temperature=float(settings.temperature),
                       max_new_tokens=args.new_tokens, per_device_train_batch_size=args.batch,
                       learning_rate=float(s["cfg"].trainer.learning_rate), gradient_checkpointing=False, bf16=False,
                       use_cpu=True, report_to=[], disable_tqdm=True)
    trainer = GKDTrainer(model=model, teacher_model=s["teacher"], args=config, processing_class=s["processor"],
                         data_collator=lambda rows: rows, train_dataset=Dataset.from_list([{"unused": 0}]))
    trainer.generation_config.min_new_tokens = args.new_tokens  # exactly --new-tokens, as Forge's variants
    return trainer


def _timed(label: str, fn: Callable, grad_only: bool = False) -> Callable:
    """`fn`, adding its seconds to the running step's `label` piece (not twice when nested)."""
    def wrapper(*a: Any, **k: Any) -> Any:
        pieces = NOW["pieces"]
        if pieces is None or label in NOW["active"] or (grad_only and not torch.is_grad_enabled()):
            return fn(*a, **k)
        NOW["active"].add(label)
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            NOW["active"].discard(label)
            pieces[label] = pieces.get(label, 0.0) + time.perf_counter() - t0
    return wrapper


def instrument(trainers: dict[str, Any], teacher: Any) -> None:
    """Wrap what each step calls: Forge's module-level GKD functions, its backends and store, TRL's methods."""
    import forge.trainers.gkd as gkd

    NOW["active"] = set()
    sample = gkd.generate_completions

    def sampled(*a: Any, **k: Any) -> torch.Tensor:  # counts the completion tokens Forge samples
        ids = sample(*a, **k)
        NOW["sampled"] = int(gkd.completion_mask(ids, k["eos_token_id"]).sum())
        return ids

    gkd.generate_completions = _timed("generate", sampled)
    gkd.student_completion_logits = _timed("student_fwd", gkd.student_completion_logits)
    gkd.generalized_jsd = _timed("divergence", gkd.generalized_jsd)
    gkd.topk_generalized_jsd = _timed("divergence", gkd.topk_generalized_jsd)
    teacher.forward = _timed("teacher", teacher.forward)
    for name, trainer in trainers.items():
        trainer.accelerator.backward = _timed("backward", trainer.accelerator.backward)
        if name == "sft":
            trainer.compute_loss = _timed("student_fwd", trainer.compute_loss)
        elif name.startswith("trl"):
            trainer.generate_on_policy_outputs = _timed("generate", trainer.generate_on_policy_outputs)
            trainer.model.forward = _timed("student_fwd", trainer.model.forward, grad_only=True)
            trainer.generalized_jsd_loss = _timed("divergence", trainer.generalized_jsd_loss)
        elif name.startswith("kd"):  # the store's view is timed through the GKD arm's wrapper (one object)
            trainer.model.student.forward = _timed("student_fwd", trainer.model.student.forward, grad_only=True)
            trainer.model.loss.forward = _timed("divergence", trainer.model.loss.forward)
        elif trainer.teacher_store is not None:
            trainer.teacher_store.view = _timed("teacher", trainer.teacher_store.view)
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1


def trl_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Forge's collated batch in TRL's layout: prompt block then completion block, labels on the completion."""
    prompt, completion = batch["prompt_input_ids"], batch["completion_input_ids"]
    pmask, cmask = batch["prompt_attention_mask"], batch["completion_attention_mask"]
    labels = torch.cat([torch.full_like(prompt, -100), completion.masked_fill(cmask == 0, -100)], dim=1)
    return {"input_ids": torch.cat([prompt, completion], 1), "attention_mask": torch.cat([pmask, cmask], 1),
            "labels": labels, "prompts": prompt, "prompt_attention_mask": pmask}


def timed_step(trainer: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """One training_step + clip + AdamW step: total seconds, pieces, loss."""
    NOW["pieces"] = pieces = {}
    t0 = time.perf_counter()
    loss = trainer.training_step(trainer.model, inputs, None)
    t1 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.args.max_grad_norm)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    total = time.perf_counter() - t0
    NOW["pieces"] = None
    return {"total": total, **pieces, "optim": total - (t1 - t0), "loss": float(loss)}


def build_trainers(s: dict[str, Any], args: argparse.Namespace, store: Any, tmp: Path) -> dict[str, Any]:
    models = {name: copy.deepcopy(s["student"]) for name in VARIANTS}
    for name in ("gkd_on_policy", "trl_on"):
        models[name].generation_config.min_new_tokens = args.new_tokens
    trainers = {
        "sft": sft_trainer(s, models["sft"], tmp),
        "gkd_live_dense": forge_trainer(s, models["gkd_live_dense"], tmp, "dense", lmbda=0.0, top_k=None),
        "gkd_live_topk": forge_trainer(s, models["gkd_live_topk"], tmp, "topk", lmbda=0.0),
        "gkd_store": forge_trainer(s, models["gkd_store"], tmp, "store", lmbda=0.0, store=store),
        "gkd_on_policy": forge_trainer(s, models["gkd_on_policy"], tmp, "on", lmbda=1.0, top_k=None),
        "trl_off": trl_trainer(s, models["trl_off"], tmp, 0.0, args),
        "trl_on": trl_trainer(s, models["trl_on"], tmp, 1.0, args),
        "kd_live_topk": kd_trainer(s, models["kd_live_topk"], tmp, "kd_live", args),
        "kd_store": kd_trainer(s, models["kd_store"], tmp, "kd_store", args, store=store),
    }
    instrument(trainers, s["teacher"])
    return trainers


def check_tokens(name: str, inputs: dict[str, Any], batch: dict[str, Any], args: argparse.Namespace) -> int:
    """Completion tokens the step trained on, checked: off-policy the dataset's, on-policy exactly --new-tokens."""
    if name.startswith("trl"):
        counted = int((inputs["labels"] != -100).sum())
        if name == "trl_off":
            assert torch.equal(inputs["labels"][inputs["labels"] != -100],
                               batch["completion_input_ids"][batch["completion_attention_mask"].bool()]), name
    elif name == "gkd_on_policy":
        counted = NOW.pop("sampled")
    else:
        counted = int(batch["completion_attention_mask"].sum())
    if name in ("trl_on", "gkd_on_policy"):
        assert counted == args.batch * args.new_tokens, (name, counted)
    return counted


def run_rounds(s: dict[str, Any], args: argparse.Namespace, store: Any, tmp: Path) -> dict[str, list]:
    """Warm-up and timed rounds, every variant once per round on the same batch, the order rotating."""
    from forge.data.indexing import EXAMPLE_INDEX_KEY

    trainers = build_trainers(s, args, store, tmp)
    data, records = s["data"], {name: [] for name in VARIANTS}
    for step in range(args.warmup + args.repeats):
        index = list(range(step * args.batch, (step + 1) * args.batch))
        batch = data.collator([data.train[i] for i in index])
        batch[EXAMPLE_INDEX_KEY] = torch.tensor(index)
        order = VARIANTS[step % len(VARIANTS):] + VARIANTS[:step % len(VARIANTS)]
        done = {}
        for name in order:
            trainer = trainers[name]
            trainer.state.global_step = step
            inputs = trl_inputs(batch) if name.startswith("trl") else dict(batch)
            done[name] = timed_step(trainer, inputs)
            done[name]["tokens"] = check_tokens(name, inputs, batch, args)
        if step >= args.warmup:
            for name, record in done.items():
                records[name].append(record)
        print(f"round {step}{' (warm-up)' if step < args.warmup else ''}: "
              + ", ".join(f"{n} {done[n]['total']:.2f}s" for n in VARIANTS), flush=True)
    return records


def summarize(records: dict[str, list]) -> list[dict[str, Any]]:
    """One row per variant: median and min step seconds, ÷ SFT, and the median of each piece."""
    sft = statistics.median(r["total"] for r in records["sft"])
    rows = []
    for name in VARIANTS:
        recs = records[name]
        median = statistics.median(r["total"] for r in recs)
        rows.append({"variant": name, "median_s": median, "min_s": min(r["total"] for r in recs),
                     "over_sft": median / sft, "tokens": statistics.median(r["tokens"] for r in recs),
                     **{p: statistics.median(r.get(p, 0.0) for r in recs) for p in PIECES}})
    return rows


def render(rows: list[dict[str, Any]], store_report: dict[str, Any], args: argparse.Namespace) -> str:
    by = {r["variant"]: r for r in rows}
    lines = [f"GKD step ÷ SFT step (CPU, {torch.get_num_threads()} threads; SmolLM2-135M teacher → its 6-block "
             f"student, Europarl batch {args.batch}, top-k {args.top_k}, on-policy {args.new_tokens} new tokens; "
             f"median of {args.repeats} interleaved rounds after {args.warmup} warm-up; pieces: medians, seconds)", "",
             "| variant | median step s | min step s | ÷ SFT | completion tokens | generate | teacher | student fwd "
             "| divergence | backward | optim |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['median_s']:.2f} | {r['min_s']:.2f} | **{r['over_sft']:.2f}** | "
                     f"{r['tokens']:.0f} | " + " | ".join(f"{r[p]:.2f}" for p in PIECES) + " |")
    held = by["gkd_store"]["over_sft"] <= 1.3
    lines += ["", f"Target gkd_store ≤ 1.3× SFT: {'held' if held else 'NOT held'} ({by['gkd_store']['over_sft']:.2f}). "
              f"TRL ÷ Forge: off-policy {by['trl_off']['median_s'] / by['gkd_live_dense']['median_s']:.2f}, on-policy "
              f"{by['trl_on']['median_s'] / by['gkd_on_policy']['median_s']:.2f}.",
              f"Store: {store_report['tokens']} completion tokens, {store_report['size_bytes']} bytes "
              f"({store_report['bytes_per_token']} bytes/token: ids {store_report['id_dtype']}, log-probabilities "
              f"{store_report['logprob_dtype']}), built in {store_report.get('build_s', 0):.1f} s (one teacher pass).",
              f"KD (CE + 0.5 · top-{args.top_k} forward KL) ÷ SFT: live teacher {by['kd_live_topk']['over_sft']:.2f}, "
              f"from the store {by['kd_store']['over_sft']:.2f}.",
              "TRL's counted tokens equal Forge's completion tokens off-policy; on-policy every variant sampled "
              f"exactly {args.new_tokens} tokens per row (both checked every round)."]
    return "\n".join(lines)


def main() -> None:
    from benchmarks.results import write_results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (one batch each)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "outputs" / "benchmarks" / "gkd_step_time"))
    args = parser.parse_args()
    setup = load_setup(args)
    with tempfile.TemporaryDirectory(prefix="forge-gkd-bench-") as tmp:
        store, report = build_store(setup, args, Path(tmp))
        records = run_rounds(setup, args, store, Path(tmp))
    rows = summarize(records)
    write_results(Path(args.out), render(rows, report, args),
                  {"args": vars(args), "rows": rows, "store": report, "records": records})


if __name__ == "__main__":
    main()
